"""The synthetic district: shaped as asked, and loadable by the product's own parsers and models."""

from services.dispatch.areas.policy import parse_areas_csv
from services.dispatch.members.models import MemberCreate
from services.sim.district import make_district


def test_the_default_district_has_148_areas_in_11_streets_each_of_one_station_and_street() -> None:
    district = make_district()
    assert len(district.areas) == 148
    assert len(district.streets) == 11
    assert len({a.code for a in district.areas}) == 148
    for station in district.stations:
        assert len({a.street for a in district.areas if a.station == station}) == 1
    assert abs(sum(a.weight for a in district.areas) - 1) < 1e-9
    rural = [a for a in district.areas if a.rural]
    assert 0 < len(rural) < len(district.areas) / 2
    assert min(a.travel_median_s for a in rural) > max(a.travel_median_s for a in district.areas if not a.rural)


def test_the_area_csv_is_what_quanzu_areas_import_takes() -> None:
    district = make_district(areas=30, streets=4)
    rows, errors = parse_areas_csv(district.csv())
    assert errors == []
    assert [r.area_code for r in rows] == [a.code for a in district.areas]
    assert rows[0].area_code == "370299-001"


def test_teams_and_members_are_valid_and_unique() -> None:
    district = make_district(areas=12, streets=3, teams_per_area=2, operators_per_station=3)
    teams = district.teams()
    assert len(teams) == 24
    assert len({t.name for t in teams}) == 24
    members = list(district.members())
    assert len({m.username for m in members}) == len(members)
    assert len(members) == 24 * 2 + len(district.stations) * 3
    for m in members:
        MemberCreate(username=m.username, name=m.name, role=m.role, team=m.team, station=m.station)


def test_one_seed_one_district() -> None:
    assert make_district(seed=3) == make_district(seed=3)
    assert make_district(seed=3) != make_district(seed=4)
