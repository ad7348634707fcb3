"""Properties of GeoContact's choice."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx.rules.geo import GeoPoint, NumberGeo, haversine_km, nearest_number

NPAS = ["212", "415", "312", "617", "416", "604"]
numbers = st.lists(
    st.builds(
        NumberGeo,
        e164=st.sampled_from([f"+1{n}55501{i:02d}" for n in NPAS for i in range(3)]),
        country=st.sampled_from(["US", "CA", "GB", None]),
        area_code=st.none() | st.sampled_from(NPAS),
        position=st.integers(0, 5),
    ),
    max_size=8,
)
points = st.none() | st.builds(
    GeoPoint,
    lat=st.none() | st.floats(-90, 90),
    lon=st.none() | st.floats(-180, 180),
    country=st.sampled_from(["US", "CA", "GB", "FR", None]),
)
coords = st.tuples(st.floats(-90, 90), st.floats(-180, 180))


@given(numbers, points)
def test_choice_is_one_of_the_numbers_and_prefers_the_country(
    nums: list[NumberGeo], visitor: GeoPoint | None
) -> None:
    chosen = nearest_number(nums, visitor, None)
    if not nums:
        assert chosen is None
        return
    assert chosen in nums
    if visitor is None:
        assert (chosen.position, chosen.e164) == min((n.position, n.e164) for n in nums)
    elif any(n.country == visitor.country for n in nums):
        assert chosen.country == visitor.country


@given(coords, coords)
def test_haversine_is_symmetric_and_bounded(a: tuple[float, float], b: tuple[float, float]) -> None:
    d = haversine_km(*a, *b)
    assert abs(d - haversine_km(*b, *a)) < 1e-6
    assert 0 <= d <= 20_016  # half the Earth's circumference
