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
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
EQUIVALENTS_DOC = ROOT / "docs" / "testing.md"

# min <-> max style swaps (identifiers, attributes and keywords such as clamp(min=...))
MIN_MAX_SWAPS = {
    "min": "max",
    "minimum": "maximum",
    "amin": "amax",
    "argmin": "argmax",
    "clamp_min": "clamp_max",
}
MIN_MAX_SWAPS.update({v: k for k, v in MIN_MAX_SWAPS.items()})

# mutmut's exit codes (mutmut.stats.status_by_exit_code), folded into what the report counts
KILLED, TIMEOUT, SURVIVED, NO_TESTS, NOT_RUN, OTHER = (
    "killed",
    "timeout",
    "survived",
    "no tests",
    "not run",
    "other",
)
STATUS = {
    1: KILLED,
    3: KILLED,
    0: SURVIVED,
    5: NO_TESTS,
    33: NO_TESTS,
    36: TIMEOUT,
    24: TIMEOUT,
    -24: TIMEOUT,
    152: TIMEOUT,
    255: TIMEOUT,
    None: NOT_RUN,
}


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

    unwanted = {
        mutators.operator_string,
        mutators.operator_dict_arguments,
        mutators.operator_symmetric_string_methods_swap,
        mutators.operator_unsymmetrical_string_methods_swap,
    }
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


# Survivors whose change cannot alter a learning result, recognised from the diff alone. Each
# class is documented in docs/testing.md; the report counts them apart from the score.
DEVICE_ARG = re.compile(r",?\s*\bdevice=(None|[\w.]+)|\.to\((None|[\w.]*device)\)")
# error-message and log-prefix arguments: check_finite(x, quantity, agent), apply_gradients(optim,
# params, loss, quantity, agent), step_optimizer(optim, module, loss, quantity, agent),
# gradient_step(optim, params, loss, max_grad_norm, quantity, agent), q_stats(prefix, q)
LABEL_CALLS = [
    (re.compile(r"check_finite\(([^,()]+(?:\([^()]*\))?)\b.*"), r"check_finite(\1"),
    (re.compile(r"(apply_gradients|step_optimizer)\(([^,]+),([^,]+),([^,]+),.*"), r"\1(\2,\3,\4"),
    (re.compile(r"gradient_step\(([^,]+),([^,]+),([^,]+),([^,]+),.*"), r"gradient_step(\1,\2,\3,\4"),
    (re.compile(r"q_stats\([^,]+, "), "q_stats("),
]
DIAGNOSTIC_ENTRY = re.compile(r'"[\w/]+":')
NOT_DIAGNOSTICS = ("stateful", "state_dict")


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    lines = diff.splitlines()[2:]  # skip the ---/+++ header
    return ([ln[1:] for ln in lines if ln.startswith("-")], [ln[1:] for ln in lines if ln.startswith("+")])


def squeeze(line: str) -> str:
    """Whitespace and a dangling comma before a closing bracket do not matter."""
    return re.sub(r",\)", ")", line.replace(" ", ""))


def classify(name: str, diff: str) -> str | None:
    """'device', 'label' or 'diagnostics' when the mutation provably only touches that; else None."""
    old, new = changed_lines(diff)
    if len(old) != 1 or len(new) != 1:
        return None
    a, b = old[0], new[0]
    if squeeze(DEVICE_ARG.sub("", a)) == squeeze(DEVICE_ARG.sub("", b)):
        return "device"
    for pattern, keep in LABEL_CALLS:
        if pattern.search(a) and pattern.sub(keep, a) == pattern.sub(keep, b):
            return "label"
    function = name.split(".")[-1]
    if DIAGNOSTIC_ENTRY.search(a) and not any(f in function for f in NOT_DIAGNOSTICS):
        # a change inside a logged-diagnostics dict: the key entries changed are values only read
        # by the logger (the dict is the function's return value or an `info` of logged columns)
        changed = [x for x, y in zip(a.split(","), b.split(",")) if x != y] or [a]
        if all(DIAGNOSTIC_ENTRY.search(x) for x in changed):
            return "diagnostics"
    return None


def classify_survivors(survivors: dict[str, str]) -> dict[str, str | None]:
    """{mutant name: module path} -> {mutant name: class or None}."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    return {n: classify(n, get_diff_for_mutant(n, path=module)) for n, module in survivors.items()}


def documented_equivalents() -> set[str]:
    """Mutant names listed in docs/testing.md's table of equivalent mutants."""
    if not EQUIVALENTS_DOC.exists():
        return set()
    return set(re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", EQUIVALENTS_DOC.read_text()))


def report(results: dict[str, dict[str, str]], equivalents: set[str]) -> list[str]:
    """Print the per-module table; return the unexplained survivors."""
    rows, totals = [], Counter()
    unexplained: list[str] = []
    survivors = {
        n: module for module, mutants in results.items() for n, s in mutants.items() if s == SURVIVED
    }
    classes = classify_survivors(survivors)
    equivalents = equivalents | {n for n, c in classes.items() if c is not None}
    for module, mutants in results.items():
        counts = Counter(mutants.values())
        equivalent = sum(1 for n, s in mutants.items() if s == SURVIVED and n in equivalents)
        detected = counts[KILLED] + counts[TIMEOUT]
        total = len(mutants)
        rows.append(
            (
                module,
                total,
                detected,
                counts[SURVIVED] - equivalent,
                equivalent,
                counts[NO_TESTS],
                counts[NOT_RUN] + counts[OTHER],
            )
        )
        totals.update(
            {
                "total": total,
                "detected": detected,
                "survived": counts[SURVIVED] - equivalent,
                "equivalent": equivalent,
                "no tests": counts[NO_TESTS],
                "other": counts[NOT_RUN] + counts[OTHER],
            }
        )
        unexplained += [n for n, s in mutants.items() if s == SURVIVED and n not in equivalents]
    header = (
        "module",
        "mutants",
        "killed",
        "survived",
        "equivalent",
        "no tests",
        "not run",
        "killed / mutants",
        "score",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))

    def score(detected: int, total: int, equivalent: int) -> str:
        live = total - equivalent
        return f"{100 * detected / live:.2f} %" if live else "-"

    def raw(detected: int, total: int) -> str:
        return f"{100 * detected / total:.1f} %" if total else "-"

    for module, total, detected, survived, equivalent, no_tests, other in rows:
        if not total:
            continue
        print(
            f"| {module} | {total} | {detected} | {survived} | {equivalent} | {no_tests} | {other} | "
            f"{raw(detected, total)} | {score(detected, total, equivalent)} |"
        )
    t = totals
    print(
        f"| **all** | {t['total']} | {t['detected']} | {t['survived']} | {t['equivalent']} | "
        f"{t['no tests']} | {t['other']} | {raw(t['detected'], t['total'])} | "
        f"{score(t['detected'], t['total'], t['equivalent'])} |"
    )
    by_class = Counter(c for c in classes.values() if c is not None)
    print(
        "\nscore = killed (incl. timeouts) / (mutants - equivalent mutants); 'no tests': no test "
        "reaches the function; 'not run': interrupted or suspicious"
    )
    print(
        "equivalent = listed in docs/testing.md ("
        + str(sum(1 for n in survivors if n in equivalents and classes.get(n) is None))
        + ") or recognised from the diff: "
        + ", ".join(f"{k} {v}" for k, v in sorted(by_class.items()))
        + " (see docs/testing.md)"
    )
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
    os.chdir(ROOT)  # mutmut reads its config and mutants/ from the working directory
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
