"""The formats people already have, as small generated files: MovieLens ml-latest (also
ml-25m/ml-32m), ml-1m and RecBole atomic files. Autodetected; errors name file, row and field;
skipped records are counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metamodal.data import DataError, load_dataset
from metamodal.data.loaders import detect_format


def _ml_latest(d: Path, bad_rating_row: str | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n"
        '2,"Heat, The (1995)",Action|Crime\n3,Obscure (2001),(no genres listed)\n'
    )
    rows = ["1,1,4.0,964982703", "1,2,3.5,964982224", "2,1,5.0,964983815",
            "2,99,4.0,964983815",  # a movie movies.csv does not list: skipped, counted
            "3,3,2.0,964982931", "3,3,2.0,964982932"]  # fmt: skip
    if bad_rating_row:
        rows.append(bad_rating_row)
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n")
    (d / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n1,1,pixar,1\n2,1,Pixar,2\n1,1,toys,3\n2,2,heist,4\n1,7,lost,5\n"
    )
    (d / "links.csv").write_text("movieId,imdbId,tmdbId\n1,0114709,862\n2,0113277,949\n3,1,\n")
    (d / "posters").mkdir(exist_ok=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(d / "posters" / "1.jpg")
    return d


def test_movielens_latest_is_detected_and_loaded_with_tags_and_skips_counted(tmp_path: Path) -> None:
    d = _ml_latest(tmp_path / "ml-latest-small")
    assert detect_format(d) == "movielens_latest"
    ds = load_dataset(d)
    assert ds.n_items == 3 and ds.n_users == 3
    assert len(ds.interactions) == 4  # 5 of a known movie, one (user, movie) pair twice
    assert ds.report.skipped["rating of a movie not in movies.csv"] == 1
    assert sum(ds.report.skipped.values()) == 3  # and the duplicate, and the tag below
    assert ds.report.skipped["tag of a movie not in movies (tags.csv)"] == 1
    text = ds.modalities["text"].texts
    assert text[0] == "Toy Story (1995). Genres: Adventure, Animation, Children. Tags: pixar, toys"
    assert text[1] == "Heat, The (1995). Genres: Action, Crime. Tags: heist"
    assert text[2] == "Obscure (2001)"  # "(no genres listed)" is not a genre
    assert ds.modalities["image"].present.tolist() == [True, False, False]  # posters/1.jpg only
    assert ds.item_meta["tmdbId"].tolist()[:2] == ["862", "949"]
    ts = ds.interactions.timestamp
    assert ts is not None and ts.min() > 0


def test_movielens_latest_bad_rows_name_the_file_row_and_field(tmp_path: Path) -> None:
    d = _ml_latest(tmp_path / "a", bad_rating_row="4,x,3.0,964982703")
    with pytest.raises(DataError, match=r"ratings.csv.*row 7.*movieId"):
        load_dataset(d)
    d = _ml_latest(tmp_path / "b", bad_rating_row="4,1,lots,964982703")
    with pytest.raises(DataError, match=r"ratings.csv.*row 7.*rating"):
        load_dataset(d)
    (d / "movies.csv").write_text("movieId,title\n1,Toy Story\n")
    with pytest.raises(DataError, match=r"movies.csv.*genres"):
        load_dataset(d)


def test_movielens_1m_dat_files(tmp_path: Path) -> None:
    d = tmp_path / "ml-1m"
    d.mkdir()
    (d / "movies.dat").write_bytes("1::Toy Story (1995)::Animation|Children's\n2::Amélie (2001)::Comedy\n"
                                   .encode("latin-1"))  # fmt: skip
    (d / "ratings.dat").write_text("1::1::5::978300760\n1::2::3::978302109\n2::2::4::978301968\n")
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    assert detect_format(d) == "movielens_1m"
    ds = load_dataset(d)
    assert (ds.n_items, ds.n_users, len(ds.interactions)) == (2, 2, 3)
    assert ds.modalities["text"].texts[1] == "Amélie (2001). Genres: Comedy"
    (d / "ratings.dat").write_text("1::1::5::978300760\n1::2::3\n")
    with pytest.raises(DataError, match=r"ratings.dat.*row 2.*expected 4"):
        load_dataset(d)


def _recbole(d: Path, inter_header: str = "user_id:token\titem_id:token\trating:float\ttimestamp:float") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{d.name}.inter").write_text(
        inter_header + "\nu1\tA\t5\t100\nu1\tB\t3\t101\nu2\tA\t4\t102\nu2\tZ\t1\t103\n"
    )
    (d / f"{d.name}.item").write_text(
        "item_id:token\ttitle:token_seq\tprice:float\tcategories:token_seq\n"
        "A\tred lamp\t9.5\thome light\nB\tblue mug\t3\tkitchen\nC\t\t1\t\n"
    )
    (d / f"{d.name}.user").write_text("user_id:token\tage:float\nu1\t30\nu2\t40\n")
    return d


def test_recbole_atomic_files_typed_headers_and_unknown_items_counted(tmp_path: Path) -> None:
    d = _recbole(tmp_path / "shop")
    assert detect_format(d) == "recbole"
    ds = load_dataset(d)
    assert list(ds.item_ids) == ["A", "B", "C"] and list(ds.user_ids) == ["u1", "u2"]
    assert len(ds.interactions) == 3
    assert ds.report.skipped["interaction with an item not in shop.item"] == 1
    assert ds.modalities["text"].texts == ["red lamp. home light", "blue mug. kitchen", None]
    assert np.allclose(ds.interactions.rating, [5, 3, 4])
    assert any("user features are not used" in n for n in ds.report.notes)
    bad = _recbole(tmp_path / "bad", "user_id:token\titem_id:tok\trating:float\ttimestamp:float")
    with pytest.raises(DataError, match=r"bad.inter, row 1, field 'item_id:tok': unknown RecBole type 'tok'"):
        load_dataset(bad, "recbole")


def test_an_mmrec_inter_without_typed_headers_stays_mmrec(tmp_path: Path) -> None:
    d = tmp_path / "mm"
    d.mkdir()
    (d / "mm.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n1\t1\t0\n")
    assert detect_format(d) == "mmrec"
