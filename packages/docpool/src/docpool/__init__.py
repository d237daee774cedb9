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
from docpool.hashes import read_hash_file, write_hash_file
from docpool.ingest import IngestReport, ingest
from docpool.parse import DocumentRejected, DocumentRejectReason
from docpool.pool import Alias, NotAPool, Pool, PoolLocked, Reject
from docpool.render import (
    ColorMode,
    encode_image,
    jpeg_bytes,
    page_is_color,
    pixmap_pixels,
    rasterise,
    render_pages,
    save_image,
    write_pages,
)
from docpool.tokens import spec_for

__version__ = "0.1.0"

__all__ = [
    "Alias",
    "ColorMode",
    "DocumentRejected",
    "IngestReport",
    "NotAPool",
    "Pool",
    "PoolLocked",
    "Reject",
    "DocumentRejectReason",
    "__version__",
    "encode_image",
    "ingest",
    "jpeg_bytes",
    "page_is_color",
    "pixmap_pixels",
    "rasterise",
    "read_hash_file",
    "render_pages",
    "save_image",
    "spec_for",
    "write_hash_file",
    "write_pages",
]
