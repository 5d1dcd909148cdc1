"""Search spaces (lrsearch.search.strategies.space): any parameter name, conditional choices, their flattened view."""

import json
import math

import pytest
import tomllib

from lrsearch.search.strategies import SpaceError, parse_space

TOML = """
lr = {low = 1e-4, high = 1.0, log = true}
schedule = {choices = {constant = {}, cosine = {final_lr_factor = {low = 1e-3, high = 0.5, log = true}}, one_cycle = {pct_start = {low = 0.1, high = 0.5}, final_lr_factor = {low = 1e-4, high = 0.1, log = true}}}}
"""
SPACE = parse_space(tomllib.loads(TOML))


def test_any_identifier_is_a_parameter_name():
    space = parse_space({"one_minus_momentum": {"low": 1e-3, "high": 0.5, "log": True}, "beta2": {"low": 0.9, "high": 1}})
    assert space.names == ["one_minus_momentum", "beta2"] and not space.is_conditional
    with pytest.raises(SpaceError, match=r"space\.1cycle: not a Python identifier"):
        parse_space({"1cycle": {"low": 0.1, "high": 0.5}})


def test_a_conditional_choice_reads_from_toml():
    (lr, schedule) = SPACE
    assert SPACE.is_conditional and schedule.conditional and not lr.conditional
    assert schedule.choices == ("constant", "cosine", "one_cycle")
    assert [sub.names for sub in schedule.branches.values()] == [[], ["final_lr_factor"], ["pct_start", "final_lr_factor"]]
    assert schedule.branch("cosine").dims[0].low == 1e-3 and schedule.branch("one_cycle").dims[1].low == 1e-4


def test_to_dict_round_trips_through_json():
    assert parse_space(json.loads(json.dumps(SPACE.to_dict()))) == SPACE
    plain = parse_space({"lr": {"low": 0.01, "high": 1.0}, "schedule": {"choices": ["constant", "cosine"]}})
    assert parse_space(json.loads(json.dumps(plain.to_dict()))) == plain


@pytest.mark.parametrize("params, inside", [
    ({"lr": 0.1, "schedule": "constant"}, True),
    ({"lr": 0.1, "schedule": "cosine", "final_lr_factor": 0.3}, True),
    ({"lr": 0.1, "schedule": "one_cycle", "pct_start": 0.3, "final_lr_factor": 0.01}, True),
    ({"lr": 0.1, "schedule": "one_cycle", "pct_start": 0.3, "final_lr_factor": 0.3}, False),  # cosine's bounds, not its own
    ({"lr": 0.1, "schedule": "cosine"}, False),  # an active parameter missing
    ({"lr": 0.1, "schedule": "constant", "final_lr_factor": 0.3}, False),  # an inactive one present
    ({"lr": 0.1, "schedule": "linear"}, False),
    ({"lr": 0.1}, False),
])
def test_contains_knows_the_active_parameters(params, inside):
    assert SPACE.contains(params) is inside


def test_the_flattened_view_has_every_sub_parameter_once_with_the_union_of_its_bounds():
    flat = SPACE.flattened()
    assert not flat.is_conditional and flat.names == ["lr", "schedule", "final_lr_factor", "pct_start"]
    factor = flat.dims[2]
    assert (factor.low, factor.high, factor.log) == (1e-4, 0.5, True)
    assert flat.dims[1].choices == ("constant", "cosine", "one_cycle")
    plain = parse_space({"lr": {"low": 0.01, "high": 1.0}})
    assert plain.flattened() == plain


def test_active_drops_the_parameters_of_branches_not_chosen():
    proposal = {"lr": 0.1, "schedule": "cosine", "final_lr_factor": 0.2, "pct_start": 0.3}
    assert SPACE.active(proposal) == {"lr": 0.1, "schedule": "cosine", "final_lr_factor": 0.2}


def test_from_flat_moves_a_union_value_to_the_same_place_in_its_branch():
    # one_cycle's final_lr_factor spans [1e-4, 0.1]; the union [1e-4, 0.5]: on a log scale, a value at a
    # fraction f of the union's decades lands at the fraction f of the branch's decades
    union = (1e-4, 0.5)
    for f in (0.0, 0.3, 1.0):
        value = math.exp(math.log(union[0]) + f * (math.log(union[1]) - math.log(union[0])))
        params = SPACE.from_flat({"lr": 0.1, "schedule": "one_cycle", "final_lr_factor": value, "pct_start": 0.2})
        assert math.log(params["final_lr_factor"] / 1e-4) / math.log(0.1 / 1e-4) == pytest.approx(f)
        assert SPACE.contains(params)
    cosine = SPACE.from_flat({"lr": 0.1, "schedule": "cosine", "final_lr_factor": 1e-4, "pct_start": 0.2})
    assert cosine == {"lr": 0.1, "schedule": "cosine", "final_lr_factor": 1e-3}  # the union's low end: cosine's
    kept = {"lr": 0.1, "schedule": "constant"}
    assert SPACE.from_flat(kept | {"final_lr_factor": 0.01, "pct_start": 0.2}) == kept


@pytest.mark.parametrize("space, match", [
    ({"schedule": {"choices": {}}}, r"space\.schedule: choices must be a non-empty list"),
    ({"schedule": {"choices": {"cosine": 0.1}}}, r"space\.schedule\.choices\.cosine: expected a table of this choice"),
    ({"schedule": {"choices": {"cosine": {"final_lr_factor": {"low": 0.5, "high": 0.1}}}}},
     r"space\.schedule\.choices\.cosine\.final_lr_factor: low \(0.5\) must be below high"),
    ({"schedule": {"choices": {"cosine": {"warmup": {"choices": {"none": {}}}}}}},
     r"space\.schedule\.choices\.cosine\.warmup: a branch's parameter cannot have branches"),
    ({"lr": {"low": 0.01, "high": 1.0}, "schedule": {"choices": {"cosine": {"lr": {"low": 0.1, "high": 1.0}}}}},
     r"space\.schedule\.choices\.cosine\.lr: the name is taken by space\.lr"),
    ({"schedule": {"choices": {"a": {"x": {"low": 0.1, "high": 1.0}}, "b": {"x": {"choices": [1, 2]}}}}},
     r"space\.schedule\.choices\.b\.x: categorical here but not in space\.schedule\.choices\.a\.x"),
])
def test_a_malformed_conditional_space_is_a_clear_error(space, match):
    with pytest.raises(SpaceError, match=match):
        parse_space(space)
