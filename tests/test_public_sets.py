"""Building the benchmark folders from public sources: each source format on tiny hand-written files in
its own layout, the cleaning and the stratified split, checksummed writing and verification, and the
errors a missing or damaged source gives. Nothing here reads the real data or the network.
"""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from sentence_mtl.data.public_sets import (
    SET_NAMES,
    SOURCE_URLS,
    Sources,
    build,
    read_labelled,
    read_plain,
    read_sst,
    read_stsb,
    read_trec,
    read_tweeteval,
    recorded_checksums,
    stratified_split,
    to_tsv,
    unique_texts,
    verify,
)
from sentence_mtl.errors import DataError, InvalidInputError

TREC_TRAIN = (
    b"DESC:manner How did serfdom develop in and then leave Russia ?\n"
    b"ENTY:cremat What films featured the character Popeye Doyle ?\n"
    b"LOC:city Which city has the oldest relationship as a sister\xf0city with Los Angeles ?\n"
    b"ABBR:exp What is the full form of .com ?\n"
    b"HUM:ind Who killed Gandhi ?\n"
    b"NUM:date When was Ozzy Osbourne born ?\n"
)
TREC_TEST = (
    b"NUM:dist How far is it from Denver to Aspen ?\nLOC:city What county is Modesto , California in ?\n"
)
SST_TRAIN = (
    "4 a stirring , funny and finally transporting re-imagining of beauty and the beast\n"
    "1 apparently reassembled from the cutting-room floor of any given daytime soap .\n"
    "2 in his first stab at the form , jacquot takes a slightly anarchic approach .\n"
    "0 a gob of drivel so sickly sweet , like rancid crème brûlée .\n"
    "3 take care of my cat offers a refreshingly different slice of asian cinema .\n"
).encode("latin-1")
STSB_LINES = (
    "main-captions\tMSRvid\t2012test\t0000\t5.000\tA man with a hard hat is dancing.\tA man in a hard hat.\n"
    'main-forum\tdeft-forum\t2014\t0010\t2.33333333333333\tShe said "no".\tHe said "yes".\tsrc1\tsrc2\n'
    "main-news\theadlines\t2015\t0065\t3\tMatt Smith quits BBC‚Äôs Doctor Who \tMatt Smith quits\n"
)


def stsb_archive(members: dict[str, str]) -> bytes:
    """A ``Stsbenchmark.tar.gz`` laid out as the distribution: ``stsbenchmark/sts-*.csv``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"stsbenchmark/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def labelled_lines(prefix: str, count: int) -> list[str]:
    return [
        f"{digit} {prefix} review {index} is {'bad' if digit == 0 else 'good'} . "
        for index in range(count)
        for digit in (0, 1)
    ]


def write_sources(folder: Path) -> Path:
    """Every source file, tiny, in its distributed format and encoding, under its download name."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train_5500.label": TREC_TRAIN,
        "TREC_10.label": TREC_TEST,
        "stsa.fine.train": SST_TRAIN,
        "stsa.fine.dev": b"2 one long string of cliches .\n0 it all feels like a monty python sketch .\n",
        "stsa.fine.test": b"1 no movement , no yuks , not much of anything .\n4 a deep and meaningful film .",
        "Stsbenchmark.tar.gz": stsb_archive(
            {"sts-train.csv": STSB_LINES, "sts-dev.csv": STSB_LINES.split("\n", 2)[0]}
        ),
        "rt-polarity.all": "\n".join(
            [*labelled_lines("movie", 20), "0 the action clichés just pile up … "]
        ).encode("cp1252"),
        "custrev.all": "\n".join(labelled_lines("player", 20)).encode("ascii")
        + b"\n0 will never purchase apex again .\n",
        "subj.all": "\n".join(labelled_lines("plot", 20)).encode("utf-8"),
        "mpqa.neg": "".join(f"complaining {index}\n" for index in range(30)).encode(),
        "mpqa.pos": "".join(f"are also being encouraged {index} \n" for index in range(12)).encode(),
        "mapping.txt": b"0\tnegative\n1\tneutral\n2\tpositive\n",
        "val_text.txt": "".join(f"@user tweet {index} \\u2019 :) \n" for index in range(30)).encode(),
        "val_labels.txt": "".join(f"{index % 3}\n" for index in range(30)).encode(),
        "test_text.txt": "@user tweet 0 \\u2019 :) \nOH: “I had a blue penis” \n".encode(),
        "test_labels.txt": b"0\n1\n",
    }
    assert set(files) == set(SOURCE_URLS)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


# ----------------------------------------------------------------------------- one reader per format


def test_trec_keeps_case_and_fine_labels_and_names_the_coarse_class() -> None:
    rows = read_trec(TREC_TRAIN, "train_5500.label")
    assert rows[0] == ("How did serfdom develop in and then leave Russia ?", "description", "DESC:manner")
    assert [row[1] for row in rows] == [
        "description",
        "entity",
        "location",
        "abbreviation",
        "human",
        "numeric",
    ]
    # The raw file's one non-ASCII byte is Windows-1252 (and Latin-1) ð.
    assert "sisterðcity" in rows[2][0]
    with pytest.raises(DataError, match=r"train_5500\.label, line 2: .*TREC coarse class"):
        read_trec(b"NUM:dist How far ?\nWHAT:x Who ?\n", "train_5500.label")


def test_sst_folds_five_classes_into_three_and_keeps_the_fine_label() -> None:
    rows = read_sst(SST_TRAIN, "stsa.fine.train")
    assert [row[1:] for row in rows] == [
        ("positive", "very_positive"),
        ("negative", "negative"),
        ("neutral", "neutral"),
        ("negative", "very_negative"),
        ("positive", "positive"),
    ]
    assert rows[3][0] == "a gob of drivel so sickly sweet , like rancid crème brûlée ."
    # The test file ends without a line break; its last sentence is still read.
    assert read_sst(b"1 no yuks .\n4 a deep film .", "stsa.fine.test")[1] == (
        "a deep film .",
        "positive",
        "very_positive",
    )
    with pytest.raises(DataError, match=r"stsa\.fine\.dev, line 1: expected 'LABEL sentence' with LABEL 0-4"):
        read_sst(b"5 too good .\n", "stsa.fine.dev")


def test_stsb_reads_pairs_by_tabs_with_float_scores_and_extra_columns() -> None:
    rows = read_stsb(stsb_archive({"sts-train.csv": STSB_LINES}), "sts-train.csv")
    assert rows == [
        ("A man with a hard hat is dancing.", "A man in a hard hat.", "5.0"),
        ('She said "no".', 'He said "yes".', "2.33333333333333"),
        ("Matt Smith quits BBC‚Äôs Doctor Who", "Matt Smith quits", "3.0"),
    ]
    with pytest.raises(DataError, match=r"has no sts-dev\.csv"):
        read_stsb(stsb_archive({"sts-train.csv": STSB_LINES}), "sts-dev.csv")
    with pytest.raises(DataError, match=r"sts-train\.csv, line 1: expected 7 tab-separated fields"):
        read_stsb(stsb_archive({"sts-train.csv": "genre\tfile\t2012\t1\tfive\ta\tb\n"}), "sts-train.csv")
    with pytest.raises(DataError, match=r"not a readable \.tar\.gz"):
        read_stsb(b"not an archive", "sts-train.csv")


def test_labelled_files_strip_skip_blank_lines_and_decode_windows_1252() -> None:
    raw = "0  . . . if you're just in the mood . \n\n1 the rock is destined … \n0 clichés\n".encode("cp1252")
    assert read_labelled(raw, "rt-polarity.all", ("negative", "positive")) == [
        (". . . if you're just in the mood .", "negative"),
        ("the rock is destined …", "positive"),
        ("clichés", "negative"),
    ]
    # A UTF-8 file stays UTF-8: é is not read as the two Windows-1252 characters Ã©.
    utf8 = "0 si el siglo xxi necesita de héroes\n".encode()
    assert read_labelled(utf8, "subj.all", ("subjective", "objective")) == [
        ("si el siglo xxi necesita de héroes", "subjective")
    ]
    with pytest.raises(DataError, match=r"custrev\.all, line 2: expected 'LABEL sentence' with LABEL 0 or 1"):
        read_labelled(b"0 fine .\n2 not a label\n", "custrev.all", ("negative", "positive"))
    with pytest.raises(DataError, match="neither UTF-8 nor Windows-1252"):
        read_labelled(b"0 bad byte \x81\n", "custrev.all", ("negative", "positive"))


def test_plain_lines_take_the_file_label() -> None:
    assert read_plain(b"the civilized world . \n\nhope\n", "mpqa.pos", "positive") == [
        ("the civilized world .", "positive"),
        ("", "positive"),
        ("hope", "positive"),
    ]


def test_tweeteval_names_labels_by_mapping_and_keeps_tweets_as_written() -> None:
    mapping = b"0\tnegative\n1\tneutral\n2\tpositive\n"
    texts = b'@user Rui En\\u2019s ex  was framed \n"Nicki did that" \n'
    assert read_tweeteval(texts, b"0\n2\n", mapping, "val") == [
        ("@user Rui En\\u2019s ex  was framed", "negative"),
        ('"Nicki did that"', "positive"),
    ]
    with pytest.raises(DataError, match=r"val_text\.txt \(2 lines\) and val_labels\.txt \(1\) differ"):
        read_tweeteval(texts, b"0\n", mapping, "val")
    with pytest.raises(DataError, match=r"test_labels\.txt, line 2: expected a number from mapping\.txt"):
        read_tweeteval(texts, b"0\n7\n", mapping, "test")


# ----------------------------------------------------------------------------- cleaning and splitting


def test_unique_texts_drops_empty_repeated_and_conflicting_texts_in_source_order() -> None:
    rows = [("b", "pos"), ("", "neg"), ("a", "neg"), ("c", "pos"), ("b", "pos"), ("a", "pos"), ("d", "neg")]
    assert unique_texts(rows) == [("b", "pos"), ("c", "pos"), ("d", "neg")]


@pytest.mark.parametrize(
    ("size", "expected"),
    # Class sizes of MR, CR, MPQA and TweetEval's validation split, with the split sizes they have.
    [(5331, (4264, 533, 534)), (1365, (1092, 136, 137)), (5809, (4647, 581, 581)), (2333, (1866, 233, 234))],
)
def test_split_cuts_each_class_at_80_and_90_percent(size: int, expected: tuple[int, int, int]) -> None:
    rows = [(f"text {index}", label) for label in ("negative", "positive") for index in range(size)]
    parts = stratified_split(rows, (0.8, 0.9))
    for part, count in zip(parts, expected, strict=True):
        assert Counter(label for _, label in part) == {"negative": count, "positive": count}
    assert sorted(row for part in parts for row in part) == sorted(rows)


def test_split_is_seeded_stratified_and_interleaves_the_classes() -> None:
    negative = [(f"n{index}", "negative") for index in range(40)]
    positive = [(f"p{index}", "positive") for index in range(10)]
    rows = positive + negative  # the source order does not set the class order
    train, dev = stratified_split(rows, (0.8,))
    assert Counter(label for _, label in train) == {"negative": 32, "positive": 8}
    assert (train, dev) == tuple(stratified_split(list(rows), (0.8,)))
    assert train != stratified_split(rows, (0.8,), seed=1)[0]
    assert len({label for _, label in train[:10]}) == 2
    # The procedure the recorded checksums depend on: one Random(0) shuffles each class in sorted
    # label order, cuts it, then shuffles each part.
    rng = random.Random(0)
    rng.shuffle(negative)
    rng.shuffle(positive)
    expected_train = negative[:32] + positive[:8]
    rng.shuffle(expected_train)
    assert train == expected_train


def test_tsv_has_a_header_and_refuses_tabs_in_texts() -> None:
    assert to_tsv("x/train.tsv", ("text", "label"), [("é a", "b")]) == "text\tlabel\né a\tb\n".encode()
    with pytest.raises(DataError, match=r"x/train\.tsv: a text holds a tab"):
        to_tsv("x/train.tsv", ("text", "label"), [("a\tb", "c")])


# ----------------------------------------------------------------------------- build and verify


def test_build_writes_every_set_in_the_shared_layout(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "sources")
    written = build(tmp_path / "data", sources)
    assert sorted(written) == sorted(recorded_checksums())
    data = tmp_path / "data"
    headers = {name: read_tsv(data / name)[0] for name in written}
    assert headers["trec/train.tsv"] == headers["sst/dev.tsv"] == ["text", "label", "fine_label"]
    assert headers["stsb/dev.tsv"] == ["sentence1", "sentence2", "score"]
    assert {
        headers[f"{name}/test.tsv"][1] for name in ("mr", "cr", "subj", "mpqa", "tweeteval_sentiment")
    } == {"label"}
    assert read_tsv(data / "trec/test.tsv")[1] == [
        "How far is it from Denver to Aspen ?",
        "numeric",
        "NUM:dist",
    ]
    mr = [row for split in ("train", "dev", "test") for row in read_tsv(data / f"mr/{split}.tsv")[1:]]
    assert ["the action clichés just pile up …", "negative"] in mr and len(mr) == 41
    cr_sizes = [len(read_tsv(data / f"cr/{split}.tsv")) - 1 for split in ("train", "dev", "test")]
    assert cr_sizes == [32, 4, 5]  # 21 negative (one added) and 20 positive reviews, 80/10/10 per class
    subj = [row for split in ("train", "dev", "test") for row in read_tsv(data / f"subj/{split}.tsv")[1:]]
    assert {label for text, label in subj if text.endswith("is bad .")} == {"subjective"}  # 0 is subjective
    assert {row[1] for row in read_tsv(data / "mpqa/train.tsv")[1:]} == {"negative", "positive"}
    tweets = (
        read_tsv(data / "tweeteval_sentiment/train.tsv")[1:]
        + read_tsv(data / "tweeteval_sentiment/dev.tsv")[1:]
    )
    # The validation tweet that is also in test is dropped; 29 remain (9/10/10), 80/20 per class.
    assert len(tweets) == 29 and ["@user tweet 0 \\u2019 :)", "negative"] not in tweets
    assert len(read_tsv(data / "tweeteval_sentiment/dev.tsv")) - 1 == 6
    assert read_tsv(data / "tweeteval_sentiment/test.tsv")[2] == ["OH: “I had a blue penis”", "neutral"]
    # Building twice gives the same bytes.
    first = {name: (data / name).read_bytes() for name in written}
    build(data, sources)
    assert {name: (data / name).read_bytes() for name in written} == first


def test_verify_reports_match_differs_and_missing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    written = build(data, write_sources(tmp_path / "sources"), ["trec", "sst"])
    checksums = tmp_path / "sums.sha256"
    checksums.write_text(
        "".join(f"{hashlib.sha256((data / name).read_bytes()).hexdigest()}  {name}\n" for name in written)
    )
    assert {check.status for check in verify(data, ["trec", "sst"], checksums)} == {"match"}
    (data / "sst/dev.tsv").write_bytes((data / "sst/dev.tsv").read_bytes().replace(b"cliches", b"cliche"))
    (data / "trec/test.tsv").unlink()
    checks = {check.name: check for check in verify(data, ["trec", "sst"], checksums)}
    assert {name: check.status for name, check in checks.items() if check.status != "match"} == {
        "sst/dev.tsv": "differs",
        "trec/test.tsv": "missing",
    }
    assert str(checks["sst/dev.tsv"]).startswith("differs  sst/dev.tsv  (sha256 ")
    assert [check.name for check in verify(data, ["trec"], checksums)] == ["trec/train.tsv", "trec/test.tsv"]


def test_recorded_checksums_cover_every_set_and_split() -> None:
    recorded = recorded_checksums()
    assert len(recorded) == 22 and {name.split("/")[0] for name in recorded} == set(SET_NAMES)
    assert {"trec/train.tsv", "trec/test.tsv", "stsb/train.tsv", "stsb/dev.tsv"} <= set(recorded)
    assert all(len(digest) == 64 and int(digest, 16) >= 0 for digest in recorded.values())


def test_missing_source_names_the_file_and_its_url_and_writes_nothing(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "sources")
    (sources / "mpqa.pos").unlink()
    with pytest.raises(
        DataError, match=r"source file mpqa\.pos is missing from .*; download https://raw\.githubusercontent"
    ):
        build(tmp_path / "data", sources, ["mpqa"])
    assert not (tmp_path / "data" / "mpqa").exists()
    with pytest.raises(DataError, match=r"sources folder .* does not exist"):
        Sources(tmp_path / "nowhere")
    with pytest.raises(InvalidInputError, match="choose from trec, sst"):
        build(tmp_path / "data", sources, ["imdb"])


def test_failed_download_says_how_to_build_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(url: str, timeout: float) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(
        DataError,
        match=r"cannot download TREC_10\.label from https://cogcomp.* \(no route to host\).*--sources",
    ):
        Sources().read("TREC_10.label")


def test_script_builds_then_verifies_and_verify_alone_reports(run_script, tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "sources")
    code, out, _ = run_script(
        "bench/build_data.py", str(tmp_path / "data"), "--sources", str(sources), "--sets", "trec"
    )
    # Tiny fixture data cannot equal the recorded files: the check must say so.
    assert code == 1 and "wrote 2 files" in out
    assert "differs  trec/train.tsv" in out and "0 of 2 files match the recorded checksums" in out
    code, out, _ = run_script("bench/build_data.py", str(tmp_path / "empty"), "--verify", "--sets", "mr")
    assert code == 1 and out.splitlines()[:3] == [
        "missing  mr/dev.tsv",
        "missing  mr/test.tsv",
        "missing  mr/train.tsv",
    ]
    code, _, err = run_script(
        "bench/build_data.py", str(tmp_path / "data"), "--sources", str(tmp_path / "none")
    )
    assert code == 2 and "error: sources folder" in err
