"""docpool: PDFs to a deduplicated, layout-parsed document pool.

from docpool import ingest, Pool
from docpool.testing import make_corpus
make_corpus(Path("corpus"), n_docs=8)          # test PDFs + ground_truth.json
report = ingest(["corpus"], "pool", workers=2)  # parse in worker processes
pool = Pool("pool")
doc = pool.get(pool.doc_ids()[0]); images = pool.render(doc.doc_id, [1, 2])
"""

# First: imports pymupdf without its layout model (see _pymupdf_layout).
import docpool._pymupdf_layout  # noqa: F401  (isort: keep first)
from docpool.ingest import IngestReport, ingest
from docpool.pool import NotAPool, Pool, PoolLocked
from docpool.render import ColorMode, render_pages, write_pages

__version__ = "0.1.0"

# The stage and its main types; the rest is reachable by module path (docpool.render for the
# encoders, docpool.parse for rejection reasons, docpool.hashes, docpool.stats, ...).
__all__ = [
    "ColorMode",
    "IngestReport",
    "NotAPool",
    "Pool",
    "PoolLocked",
    "__version__",
    "ingest",
    "render_pages",
    "write_pages",
]
