"""Import a large CSV file with bulk_create(): all at once, or chunk by chunk."""

import asyncio
import csv
from collections.abc import Iterable, Iterator
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Numeric, String
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo import Base, TimestampedBase, UniqueViolationError
from sqla_repo.repository import BaseRepository


class Product(TimestampedBase):
    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    stock: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None] = mapped_column(String(200))


class ProductRepository(BaseRepository[Product]):
    pass


def write_csv(path: Path, rows: int, *, duplicate_at: int | None = None) -> None:
    """Write a sample file; the row at *duplicate_at* repeats the first SKU."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["sku", "name", "price", "stock", "note"])
        for n in range(rows):
            sku = "SKU-0" if n == duplicate_at else f"SKU-{n}"
            writer.writerow(
                [
                    sku,
                    f"Product {n}",
                    f"{n % 100}.99",
                    n % 7,
                    "" if n % 3 else "new",
                ]
            )


# --8<-- [start:read]
def read_products(path: Path) -> Iterator[dict[str, Any]]:
    """Yield one mapping per CSV line, converted to the column types."""
    with path.open(newline="", encoding="utf-8") as file:
        for line in csv.DictReader(file):
            yield {
                "sku": line["sku"],
                "name": line["name"],
                "price": Decimal(line["price"]),
                "stock": int(line["stock"]),
                "note": line["note"] or None,  # an empty cell is NULL
            }


def chunks(
    rows: Iterable[dict[str, Any]], size: int
) -> Iterator[list[dict[str, Any]]]:
    """Yield lists of *size* rows."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


# --8<-- [end:read]
# --8<-- [start:all-or-nothing]
async def import_all_or_nothing(
    new_session: async_sessionmaker[AsyncSession], path: Path
) -> int:
    """Import the whole file in one transaction: every row, or none."""
    imported = 0
    async with new_session() as session, session.begin():
        products = ProductRepository(session)
        for chunk in chunks(read_products(path), 2_000):
            imported += len(await products.bulk_create(chunk, batch_size=1_000))
    return imported


# --8<-- [end:all-or-nothing]
# --8<-- [start:chunk-by-chunk]
async def import_chunk_by_chunk(
    new_session: async_sessionmaker[AsyncSession], path: Path
) -> tuple[int, list[int]]:
    """Commit chunk by chunk; a chunk with a bad row is reported and skipped."""
    imported, failed = 0, []
    for number, chunk in enumerate(chunks(read_products(path), 2_000)):
        async with new_session() as session, session.begin():
            try:
                imported += len(await ProductRepository(session).bulk_create(chunk))
            except UniqueViolationError:
                failed.append(number)  # nothing of this chunk was inserted
    return imported, failed


# --8<-- [end:chunk-by-chunk]
async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///products.db")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    good, bad = Path("products.csv"), Path("products-with-duplicate.csv")
    write_csv(good, 6_000)
    write_csv(bad, 6_000, duplicate_at=4_321)

    # --8<-- [start:run]
    print("good file:", await import_all_or_nothing(new_session, good), "rows")
    async with new_session() as session:
        await ProductRepository(session).delete_where()
        await session.commit()

    try:
        await import_all_or_nothing(new_session, bad)
    except UniqueViolationError:
        async with new_session() as session:
            print(
                "bad file, all or nothing:",
                await ProductRepository(session).count(),
                "rows",
            )

    imported, failed = await import_chunk_by_chunk(new_session, bad)
    print("bad file, chunk by chunk:", imported, "rows; failed chunks:", failed)
    # --8<-- [end:run]

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
