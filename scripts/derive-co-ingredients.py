#!/usr/bin/env python3
"""Derive the `co_ingredients` column of crates/refill-rules/data/opioid-drugs.csv (issue 13).

The upstream extract lists one row per opioid ingredient; a combination product's other ingredients
(acetaminophen, chlorpheniramine, naloxone ...) appear only in its RxNorm normalized name. This script
reads each name ONCE, component by component as RxNorm writes a clinical drug ("[qualifier] name
strength unit / name strength unit ... dose form [Brand]", the qualifier being "Abuse-Deterrent", "12 HR",
"72 HR", "1 ML" ...), and writes the non-opioid components as a structured column:
`acetaminophen=325 MG|caffeine=40 MG` (empty for single-ingredient products). The rules read the
column, never the name. Run from the repository root; it rewrites the file in place and is idempotent.
"""
import csv
import io
import re
import sys

PATH = "crates/refill-rules/data/opioid-drugs.csv"
QUALIFIER = re.compile(r"^(Abuse-Deterrent\s+)?(\d+(\.\d+)? (HR|ML|DAY|ACTUAT)\s+)?", re.IGNORECASE)
COMPONENT = re.compile(r"^(.*\S)\s+([\d.]+)\s+(\S+)$")


def co_ingredients(name, dose_form, opioids):
    body = re.sub(r"\s*\[[^\]]*\]$", "", name)
    if not body.endswith(dose_form) or body.startswith("{"):
        return ""  # packs ("{2 (...) } Pack"): single-opioid kits in this table, no co-ingredient
    body = QUALIFIER.sub("", body[: -len(dose_form)].strip())
    found = []
    for component in body.split(" / "):
        match = COMPONENT.match(component)
        if not match:
            sys.exit(f"{name!r}: component {component!r} is not 'name strength unit'")
        words = match.group(1).lower()
        if any(word in opioids for word in words.split()):
            continue
        found.append(f"{words}={match.group(2)} {match.group(3)}")
    return "|".join(sorted(found))


def main():
    text = open(PATH, newline="").read()
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    if "co_ingredients" not in header:
        header.append("co_ingredients")
        body = [row + [""] for row in body]
    column = header.index("co_ingredients")
    opioids = {row[2].lower() for row in body}
    for row in body:
        row[column] = co_ingredients(row[1], row[5], opioids)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    open(PATH, "w", newline="").write(out.getvalue())


if __name__ == "__main__":
    main()
