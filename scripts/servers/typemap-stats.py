#!/usr/bin/env python3
"""Summarise a type map printed by `mcr-cc --print-typemap BINARY` (TOML).

usage: typemap-stats.py FILE.toml
Prints one line: "SITES TYPED PERCENT" then, on following lines, the count
of sites per `rule` (typed and untyped), most frequent first. An
[[alloc_sites]] entry is typed when it has a `type` key.
"""
import collections
import sys
import tomllib


def main():
    with open(sys.argv[1], "rb") as f:
        data = tomllib.load(f)
    sites = data.get("alloc_sites", [])
    typed = sum(1 for s in sites if "type" in s)
    pct = 100.0 * typed / len(sites) if sites else 0.0
    print(f"{len(sites)} {typed} {pct:.1f}")
    rules = collections.Counter(
        (("typed" if "type" in s else "untyped"), str(s.get("rule", "?"))) for s in sites)
    for (kind, rule), n in rules.most_common():
        print(f"  {n:6d}  {kind:7s}  {rule}")


if __name__ == "__main__":
    main()
