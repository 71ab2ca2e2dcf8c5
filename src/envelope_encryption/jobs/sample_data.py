"""A reproducible synthetic PII data set: names, emails, SSNs, birth dates, salaries.

Nothing here is real: names come from small lists, SSNs use the 900-999 area numbers that
the US Social Security Administration never issues.
"""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path

FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia",
         "Tim", "Margaret", "Dennis", "Shafi", "Whitfield", "Hedy", "Claude")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
        "Perlman", "Berners-Lee", "Hamilton", "Ritchie", "Goldwasser", "Diffie", "Lamarr",
        "Shannon")
COLUMNS = ("id", "name", "email", "ssn", "birth_date", "salary", "country")
PII_COLUMNS = ("name", "email", "ssn", "birth_date", "salary")


def customers(count: int, first_id: int = 1, seed: int = 7) -> list[dict[str, object]]:
    """``count`` customer rows with ids from ``first_id``; the same seed gives the same rows."""
    rng = random.Random(seed * 1_000_003 + first_id)  # noqa: S311 - synthetic data, not keys
    rows = []
    for offset in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        rows.append({
            "id": first_id + offset,
            "name": f"{first} {last}",
            "email": f"{first}.{last}{first_id + offset}@example.com".lower(),
            "ssn": f"{rng.randint(900, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
            "birth_date": (date(1950, 1, 1) + timedelta(days=rng.randint(0, 18_000))).isoformat(),
            "salary": f"{rng.randint(30_000, 250_000)}.{rng.randint(0, 99):02d}",
            "country": rng.choice(("US", "GB", "DE", "FR", "JP", "BR")),
        })
    return rows


def write_csv(rows: list[dict[str, object]], path: str | Path) -> Path:
    """Write rows as one CSV file with a header (a landing file for encrypt_columns)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path
