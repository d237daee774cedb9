"""Schema versioning. The policy is written in docs/schemas.md.

Every top-level record carries ``schema_version``. Readers accept any version with the same
major number; a minor bump only adds optional fields with defaults. A record of another major
version is refused with a message that says which package to upgrade or which migration to run.
"""

from __future__ import annotations

SCHEMA_VERSION = "1.2"
SCHEMA_MAJOR = int(SCHEMA_VERSION.split(".")[0])


def check_schema_version(version: str) -> str:
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise ValueError(f"schema_version {version!r} is not of the form MAJOR.MINOR") from None
    if major != SCHEMA_MAJOR:
        direction = "upgrade mmprolong-schemas" if major > SCHEMA_MAJOR else "migrate the data"
        raise ValueError(
            f"record has schema version {version}, this mmprolong-schemas reads "
            f"{SCHEMA_MAJOR}.x: {direction} (see docs/schemas.md)"
        )
    return version
