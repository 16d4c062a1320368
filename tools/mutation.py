"""Mutation testing of the update rules: run mutmut, then print the score per module.

    pip install -r requirements-dev.txt
    python tools/mutation.py            # run mutmut (config in setup.cfg), then the report
    python tools/mutation.py --report   # the report of the last run only
    python tools/mutation.py --survivors  # also print each unexplained survivor's diff

mutmut copies the code into `mutants/`, applies one mutation at a time and runs the tests that
reach the mutated function (forked from one warm process); a mutant is *killed* when a test fails
(or it times out). A surviving mutant is a change to the code that no test notices. Survivors
that cannot change behaviour (equivalent mutants) are listed, with the reason, in
docs/testing.md; every other survivor is printed as *unexplained*, and `--strict` exits 1 if
there is any.

The mutations are mutmut's, tuned for numerical update rules: added are min <-> max swaps
(`min`, `torch.minimum`, `.amax`, `argmin`, `clamp(min=...)`, ...) and dropped terms (`a + b`,
`a - b` -> `a`; `a * b` -> `a` and `b`), which mutmut lacks; removed are its string mutations
(they only rename log columns and reword messages) and string-method swaps. Changing them
invalidates earlier results: delete `mutants/` first.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
EQUIVALENTS_DOC = ROOT / "docs" / "testing.md"

# min <-> max style swaps (identifiers, attributes and keywords such as clamp(min=...))
MIN_MAX_SWAPS = {"min": "max", "minimum": "maximum", "amin": "amax", "argmin": "argmax",
                 "clamp_min": "clamp_max"}
MIN_MAX_SWAPS.update({v: k for k, v in MIN_MAX_SWAPS.items()})

# mutmut's exit codes (mutmut.stats.status_by_exit_code), folded into what the report counts
KILLED, TIMEOUT, SURVIVED, NO_TESTS, NOT_RUN, OTHER = ("killed", "timeout", "survived", "no tests",
                                                      "not run", "other")
STATUS = {1: KILLED, 3: KILLED, 0: SURVIVED, 5: NO_TESTS, 33: NO_TESTS, 36: TIMEOUT, 24: TIMEOUT,
          -24: TIMEOUT, 152: TIMEOUT, 255: TIMEOUT, None: NOT_RUN}


def tune_operators() -> None:
    """Adjust mutmut's operator table in place (its modules hold references to the list)."""
    import libcst as cst
    from mutmut.mutation import mutators

    def swap_min_max(node: cst.Name):
        if node.value in MIN_MAX_SWAPS:
            yield node.with_changes(value=MIN_MAX_SWAPS[node.value])

    def drop_term(node: cst.BinaryOperation):
        if isinstance(node.operator, (cst.Add, cst.Subtract, cst.Multiply)):
            yield node.left.with_changes(lpar=node.lpar, rpar=node.rpar) if node.lpar else node.left
        if isinstance(node.operator, cst.Multiply):
            yield node.right

    unwanted = {mutators.operator_string, mutators.operator_dict_arguments,
                mutators.operator_symmetric_string_methods_swap,
                mutators.operator_unsymmetrical_string_methods_swap}
    table = [(t, op) for t, op in mutators.mutation_operators if op not in unwanted]
    table += [(cst.Name, swap_min_max), (cst.BinaryOperation, drop_term)]
    mutators.mutation_operators[:] = table


def run_mutmut(names: list[str]) -> int:
    """`mutmut run [names]` in this process, with the tuned operators."""
    tune_operators()
    from mutmut.__main__ import cli

    try:
        cli.main(["run", *names], standalone_mode=False)
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def load_results() -> dict[str, dict[str, str]]:
    """module path -> {mutant name: status} from mutmut's .meta files."""
    if not MUTANTS.is_dir():
        sys.exit("no mutants/ folder: run `python tools/mutation.py` (without --report) first")
    results: dict[str, dict[str, str]] = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        module = str(meta.relative_to(MUTANTS))[: -len(".meta")]
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        results[module] = {name: STATUS.get(code, OTHER) for name, code in codes.items()}
    return results


def documented_equivalents() -> set[str]:
    """Mutant names listed in docs/testing.md's table of equivalent mutants."""
    if not EQUIVALENTS_DOC.exists():
        return set()
    return set(re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", EQUIVALENTS_DOC.read_text()))


def report(results: dict[str, dict[str, str]], equivalents: set[str]) -> list[str]:
    """Print the per-module table; return the unexplained survivors."""
    rows, totals = [], Counter()
    unexplained: list[str] = []
    for module, mutants in results.items():
        counts = Counter(mutants.values())
        equivalent = sum(1 for n, s in mutants.items() if s == SURVIVED and n in equivalents)
        detected = counts[KILLED] + counts[TIMEOUT]
        total = len(mutants)
        rows.append((module, total, detected, counts[SURVIVED] - equivalent, equivalent,
                     counts[NO_TESTS], counts[NOT_RUN] + counts[OTHER]))
        totals.update({"total": total, "detected": detected, "survived": counts[SURVIVED] - equivalent,
                       "equivalent": equivalent, "no tests": counts[NO_TESTS],
                       "other": counts[NOT_RUN] + counts[OTHER]})
        unexplained += [n for n, s in mutants.items() if s == SURVIVED and n not in equivalents]
    header = ("module", "mutants", "killed", "survived", "equivalent", "no tests", "not run", "score")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))

    def score(detected: int, total: int, equivalent: int) -> str:
        live = total - equivalent
        return f"{100 * detected / live:.1f} %" if live else "-"

    for module, total, detected, survived, equivalent, no_tests, other in rows:
        print(f"| {module} | {total} | {detected} | {survived} | {equivalent} | {no_tests} | {other} | "
              f"{score(detected, total, equivalent)} |")
    t = totals
    print(f"| **all** | {t['total']} | {t['detected']} | {t['survived']} | {t['equivalent']} | "
          f"{t['no tests']} | {t['other']} | {score(t['detected'], t['total'], t['equivalent'])} |")
    print("\nscore = killed (incl. timeouts) / (mutants - documented equivalent mutants); "
          "'no tests': no test reaches the function; 'not run': interrupted or suspicious")
    return unexplained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="report the last run, do not run mutmut")
    parser.add_argument("--survivors", action="store_true", help="print each unexplained survivor's diff")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any survivor is unexplained")
    parser.add_argument("mutants", nargs="*", help="run only these mutant names or globs (mutmut syntax)")
    args = parser.parse_args()
    if not args.report:
        os.chdir(ROOT)
        code = run_mutmut(args.mutants)
        if code:
            return code
    unexplained = report(load_results(), documented_equivalents())
    if unexplained:
        print(f"\n{len(unexplained)} unexplained survivor(s):")
        for name in unexplained:
            print(f"  {name}")
            if args.survivors:
                subprocess.call(["mutmut", "show", name], cwd=ROOT)
    return 1 if unexplained and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
