"""Build the benchmark data folders from their public sources, then check every file's SHA-256.

    python bench/build_data.py "$DATA"                        # download the sources, build all 8 sets
    python bench/build_data.py "$DATA" --sources "$SOURCES"   # read already-downloaded source files
    python bench/build_data.py "$DATA" --sets trec sst        # only some sets
    python bench/build_data.py "$DATA" --verify               # only check an existing folder

Prints one line per file, ``match`` or ``differs`` (or ``missing``), against the checksums recorded
in sentence_mtl/data/public_sets.sha256; exits 1 unless every file matches. See docs/data.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sentence_mtl.data.public_sets import SET_NAMES, build, verify
from sentence_mtl.errors import run_script


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", type=Path, help="folder to build into (or to check with --verify)")
    parser.add_argument(
        "--sources", type=Path, help="folder of already-downloaded source files (default: download them)"
    )
    parser.add_argument("--sets", nargs="+", choices=SET_NAMES, default=list(SET_NAMES), help="sets to build")
    parser.add_argument("--verify", action="store_true", help="only check DATA_DIR against the checksums")
    args = parser.parse_args()
    if args.verify and args.sources is not None:
        parser.error("--verify reads no sources; leave out --sources")

    if not args.verify:
        written = build(args.data_dir, args.sources, args.sets)
        print(f"wrote {len(written)} files under {args.data_dir}")
    checks = verify(args.data_dir, args.sets)
    for check in checks:
        print(check)
    matching = sum(check.status == "match" for check in checks)
    print(f"{matching} of {len(checks)} files match the recorded checksums")
    return 0 if matching == len(checks) else 1


if __name__ == "__main__":
    run_script(main)
