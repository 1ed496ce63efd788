import pytest

from pipeline.identify.naming import label_from_filename, title_case


@pytest.mark.parametrize("name, label, variant", [
    ("LOCH-JP001_dark_magician_ur.jpg", "Dark Magician", "ur"),
    ("loch-jp001_dark_magician_UR.png", "Dark Magician", "ur"),
    ("SDK-001_blue-eyes_white_dragon.jpg", "Blue-Eyes White Dragon", None),
    ("RA01-EN054_ash_blossom_&_joyous_spring_pscr.webp", "Ash Blossom & Joyous Spring", "pscr"),
    ("pot_of_greed_scr.jpeg", "Pot Of Greed", "scr"),
    ("mirror_force_sr_2.jpg", "Mirror Force", "sr"),  # trailing copy number dropped first
    ("raigeki_op (2).jpg", "Raigeki", "op"),
    ("dragon's_egg_gmr.png", "Dragon's Egg", "gmr"),
    ("maxx_c_utr.jpg", "Maxx C", "utr"),
    ("nibiru_CR.jpg", "Nibiru", "cr"),
    ("monster_reborn_ea.jpg", "Monster Reborn", "ea"),
    ("DARK_MAGICIAN.jpg", "Dark Magician", None),
    ("super__rare__card.jpg", "Super Rare Card", None),  # 'rare' is not a rarity code
    ("ur.jpg", "Ur", None),  # a bare rarity is a name, not a variant
    ("refs/sub/LOB-EN005_dark_magician.jpg", "Dark Magician", None),
])
def test_label_from_filename(name, label, variant):
    assert label_from_filename(name) == (label, variant)


def test_rarity_must_be_a_whole_trailing_token():
    assert label_from_filename("trooper.jpg") == ("Trooper", None)  # ends in 'r' but no token
    assert label_from_filename("kuriboh_scrap.jpg") == ("Kuriboh Scrap", None)


def test_title_case_handles_hyphens_and_apostrophes():
    assert title_case("blue-eyes white dragon") == "Blue-Eyes White Dragon"
    assert title_case("HARPIE'S FEATHER duster") == "Harpie's Feather Duster"
