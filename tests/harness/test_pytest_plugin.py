"""The pytest plugin itself, tested with pytester."""

pytest_plugins = ["pytester"]


def test_fixtures_are_documented(pytester):
    result = pytester.runpytest("--fixtures")
    out = result.stdout.str()
    for fixture in ("datacenter_factory", "datacenter", "host_exec", "assert_reachable", "assert_unreachable",
                    "netsim_state_dir", "fault"):
        assert fixture in out
    assert "no docstring available" not in out.split("netsim.harness.pytest_plugin")[-1]


def test_root_marker_is_registered_and_header_reports_settings(pytester):
    pytester.makepyfile("import pytest\n@pytest.mark.root\ndef test_x():\n    assert True\n")
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["netsim: running as *"])
