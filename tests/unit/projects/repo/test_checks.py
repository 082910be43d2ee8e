"""What a red gate tells the engineer (projects/repo/checks.py ``explain``): the first failures and the test
runner's summary, within the size limit, not only the last lines (issue 25)."""

from __future__ import annotations

from projects.repo.checks import explain

PYTEST = (
    "============================= test session starts ==============================\n"
    + "".join(f"tests/test_{n}.py ....\n" for n in range(200))
    + "=================================== FAILURES ===================================\n"
    "___________________________________ test_mul ___________________________________\n"
    "    def test_mul():\n>       assert mul(2, 3) == 6\nE       assert 5 == 6\n\n"
    "tests/test_calc.py:9: AssertionError\n"
    + "".join(f"___ test_other_{n} ___\n" + "noise line\n" * 40 for n in range(20))
    + "=========================== short test summary info ============================\n"
    "FAILED tests/test_calc.py::test_mul - assert 5 == 6\n"
    "========================= 1 failed, 800 passed in 20.01s =========================\n"
)
UNITTEST = (
    "." * 3000 + "\n======================================================================\n"
    "FAIL: test_mul (test_calc.CalcTest.test_mul)\n"
    "----------------------------------------------------------------------\n"
    "AssertionError: 5 != 6\n"
    + "x = 1\n"
    * 600
    + "\n----------------------------------------------------------------------\n"
    "Ran 801 tests in 2.001s\n\nFAILED (failures=1)\n"
)


def test_pytest_keeps_the_first_failure_and_the_summary() -> None:
    shown = explain(PYTEST, 1500)
    assert len(shown) <= 1500
    assert "assert 5 == 6" in shown and "tests/test_calc.py:9" in shown  # the first failure
    assert "FAILED tests/test_calc.py::test_mul" in shown and "1 failed, 800 passed" in shown  # the summary
    assert "test session starts" not in shown and "tests/test_3.py" not in shown  # not the progress dots


def test_unittest_keeps_the_first_failure_and_the_summary() -> None:
    shown = explain(UNITTEST, 1500)
    assert len(shown) <= 1500
    assert shown.startswith("FAIL: test_mul") and "AssertionError: 5 != 6" in shown
    assert "Ran 801 tests" in shown and "FAILED (failures=1)" in shown


def test_output_without_a_runner_is_its_tail_and_short_output_is_whole() -> None:
    assert explain("all good\n", 100) == "all good"
    shown = explain("line\n" * 1000 + "the end", 200)
    assert shown.endswith("the end") and len(shown) <= 202
