#!/usr/bin/env python3
"""Generates the sample shop in examples/data/: customers, products, orders.

Deterministic (seeded RNG, fixed reference date 2026-11-01T00:00:00Z), so the
committed files and the tests that read them never drift. Python 3 stdlib
only. Run from anywhere:

    python3 examples/generate_data.py
"""

import csv
import random
import unicodedata
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

SEED = 20261101
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)
OUT = Path(__file__).resolve().parent / "data"

CUSTOMERS = 200
ORDERS = 2000
ORDER_DAYS = 180

FIRST_NAMES = [
    "Ana", "Ben", "Chloé", "David", "Elif", "Fatima", "Gabriel", "Hana", "Ines", "Jonas", "Kai", "Léa",
    "Mateo", "Nora", "Oskar", "Priya", "Quentin", "Rosa", "Søren", "Tomás", "Uma", "Victor", "Wen", "Yara",
    "Zoë", "Łukasz", "Ngozi", "Haruto", "Aylin", "Björn",
]
LAST_NAMES = [
    "Silva", "Müller", "García", "Nguyen", "Okafor", "Kowalski", "Rossi", "Yılmaz", "Dubois", "Johansson",
    "Tanaka", "O'Brien", "Novák", "Fernández", "Schmidt", "Haddad", "Kim", "Larsen", "Moreau", "Patel",
]
COUNTRIES = ["DE", "FR", "ES", "IT", "NL", "PL", "SE", "PT", "GB", "US", "BR", "JP", "TR", "NG", "IN"]

CATEGORIES = {
    "coffee": ["Espresso beans", "Filter roast", "Decaf blend", "Single origin Ethiopia", "Cold brew pack"],
    "tea": ["Sencha", "Earl Grey", "Rooibos", "Masala chai", "Jasmine pearls", "Matcha 🍵 starter kit"],
    "equipment": ["Pour-over dripper", "Burr grinder", "Milk frother", "Gooseneck kettle", "Scale", "Moka pot"],
    "accessories": ["Paper filters", "Travel mug", "Ceramic cup", "Tamper", "Cleaning tablets", "Tote bag"],
    "food": ["Dark chocolate", "Almond biscotti", "Stroopwafels", "Oat cookies", "Honey", "Crème brûlée fudge"],
}
PRICE_RANGE = {
    "coffee": (8, 24),
    "tea": (5, 16),
    "equipment": (18, 180),
    "accessories": (3, 30),
    "food": (2, 12),
}


def iso(t):
    """ISO 8601 in UTC with a Z, to the second."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ascii_slug(text):
    """Lower-case ASCII letters of a name, for e-mail addresses."""
    text = unicodedata.normalize("NFKD", text.lower().translate(str.maketrans("øłı", "oli")))
    return "".join(c for c in text if c.isascii() and c.isalnum())


def customers(rng):
    rows = []
    for customer_id in range(1, CUSTOMERS + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        created = NOW - timedelta(days=rng.uniform(200, 900), seconds=rng.randrange(86400))
        updated = created + timedelta(days=rng.uniform(0, (NOW - created).days))
        rows.append(
            {
                "customer_id": customer_id,
                "name": f"{first} {last}",
                "email": f"{ascii_slug(first)}.{ascii_slug(last)}{customer_id}@example.com",
                # A few customers never told us where they live.
                "country": "" if rng.random() < 0.03 else rng.choice(COUNTRIES),
                "created_at": iso(created),
                "updated_at": iso(updated),
            }
        )
    return rows


def products(rng):
    rows = []
    for category, names in CATEGORIES.items():
        low, high = PRICE_RANGE[category]
        for name in names:
            price = Decimal(rng.randrange(low * 100, high * 100)) / 100
            variants = [(name, price)]
            if rng.random() < 0.7:
                variants.append((f"{name} (large)", (price * Decimal("1.8")).quantize(Decimal("0.01"))))
            for variant, variant_price in variants:
                rows.append(
                    {
                        "product_id": len(rows) + 1,
                        "name": variant,
                        "category": category,
                        "price": f"{variant_price:.2f}",
                        "updated_at": iso(NOW - timedelta(days=rng.uniform(1, 400))),
                    }
                )
    return rows


def status_for(rng, age_days):
    if rng.random() < 0.04:
        return "cancelled"
    if age_days < 2:
        return rng.choice(["pending", "paid"])
    if age_days < 7:
        return rng.choice(["paid", "shipped", "shipped"])
    if rng.random() < 0.03:
        return "refunded"
    return "delivered"


def orders(rng, customer_rows, product_rows):
    start = NOW - timedelta(days=ORDER_DAYS)
    created = sorted(start + timedelta(seconds=rng.randrange(ORDER_DAYS * 86400)) for _ in range(ORDERS))
    # Some customers buy far more than others.
    weights = [rng.paretovariate(1.5) for _ in customer_rows]
    rows = []
    for order_id, created_at in enumerate(created, start=1):
        customer = rng.choices(customer_rows, weights)[0]
        product = rng.choice(product_rows)
        quantity = rng.choices([1, 2, 3, 4, 5], [60, 20, 10, 6, 4])[0]
        age_days = (NOW - created_at).total_seconds() / 86400
        status = status_for(rng, age_days)
        updated_at = min(NOW, created_at + timedelta(hours=rng.uniform(0, 24 * min(age_days, 10))))
        rows.append(
            {
                "order_id": order_id,
                "customer_id": customer["customer_id"],
                "product_id": product["product_id"],
                "quantity": quantity,
                "amount": f"{Decimal(product['price']) * quantity:.2f}",
                "status": status,
                "created_at": iso(created_at),
                "updated_at": iso(updated_at),
            }
        )
    return rows


def write(name, rows):
    with open(OUT / name, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main():
    rng = random.Random(SEED)
    OUT.mkdir(exist_ok=True)
    customer_rows = customers(rng)
    product_rows = products(rng)
    write("customers.csv", customer_rows)
    write("products.csv", product_rows)
    write("orders.csv", orders(rng, customer_rows, product_rows))


if __name__ == "__main__":
    main()
