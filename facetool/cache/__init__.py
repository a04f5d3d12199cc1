"""The HDF5 face cache: the only code that opens HDF5 files.

A cache is one consolidated HDF5 file plus, while a writer is running (or after it was killed), a journal
directory of small segment files beside it. Segments are written to a temporary name, fsynced and renamed,
so each one is complete or absent; the HDF5 file is only ever replaced whole with `os.replace`. Readers
show the file plus the valid segments; a new writer folds the journal into the file first.
The layout is documented in docs/cache-format.md.

Modules: `records` (records, failures, format, metadata columns), `codec` (JPEG/raw payloads), `store`
(the HDF5 file), `journal` (segments), `merge` (file + journal), `reader` (`FaceCache`, `open_cache`),
`writer` (lock, `CacheWriter`, consolidation), `copy` (`write_selection`, `write_payloads`), `origin` (the folder, shard,
detector and crop settings a cache's meta records: checked on resume, carried through merges).
"""

from facetool.cache.copy import check_combinable, write_payloads, write_selection
from facetool.cache.reader import FaceCache, open_cache
from facetool.cache.records import (
    ENCODINGS,
    FORMAT_NAME,
    FORMAT_VERSION,
    CacheFormat,
    FaceRecord,
    Failure,
    Removal,
    journal_dir,
    lock_path,
)
from facetool.cache.writer import CacheWriter

__all__ = [
    "ENCODINGS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CacheFormat",
    "CacheWriter",
    "FaceCache",
    "FaceRecord",
    "Failure",
    "Removal",
    "check_combinable",
    "journal_dir",
    "lock_path",
    "open_cache",
    "write_payloads",
    "write_selection",
]
