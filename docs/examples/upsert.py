"""Upsert: insert a row, or update the one that holds its unique key."""

import asyncio
from decimal import Decimal

from sqlalchemy import Numeric, String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo import (
    AuditedBase,
    Base,
    ConflictError,
    RepositoryError,
    SoftDeleteMixin,
    VersionMixin,
    actor,
)
from sqla_repo.repository import BaseRepository


# --8<-- [start:model]
class Product(AuditedBase, SoftDeleteMixin, VersionMixin):
    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    stock: Mapped[int] = mapped_column(default=0)


class ProductRepository(BaseRepository[Product]):
    pass


# --8<-- [end:model]
def show(product: Product) -> None:
    print(
        f"  {product.sku} {product.name!r} {product.price} stock={product.stock}"
        f" v{product.version} by {product.created_by}/{product.updated_by}"
    )


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    # --8<-- [start:upsert]
    with actor("importer"):
        async with new_session() as session, session.begin():
            products = ProductRepository(session)
            row = {
                "sku": "A-1",
                "name": "Anvil",
                "price": Decimal("9.99"),
                "stock": 5,
            }
            print("first upsert inserts:")
            show(await products.upsert(row, conflict_on=["sku"]))

    with actor("pricing-job"):
        async with new_session() as session, session.begin():
            products = ProductRepository(session)
            row = {
                "sku": "A-1",
                "name": "Anvil (heavy)",
                "price": Decimal("12.50"),
                "stock": 0,
            }
            print("second upsert updates only the price:")
            show(await products.upsert(row, conflict_on=["sku"], update=["price"]))
    # --8<-- [end:upsert]

    # --8<-- [start:bulk-upsert]
    with actor("importer"):
        async with new_session() as session, session.begin():
            products = ProductRepository(session)
            rows = [
                {
                    "sku": "A-1",
                    "name": "Anvil",
                    "price": Decimal("11.00"),
                    "stock": 7,
                },
                {
                    "sku": "B-2",
                    "name": "Bucket",
                    "price": Decimal("3.20"),
                    "stock": 40,
                },
            ]
            print("bulk_upsert, in input order:")
            for product in await products.bulk_upsert(rows, conflict_on=["sku"]):
                show(product)
    # --8<-- [end:bulk-upsert]

    # --8<-- [start:guarded]
    async with new_session() as session, session.begin():
        products = ProductRepository(session)
        await products.soft_delete((await products.get_one(sku="B-2")).id)
        try:
            await products.upsert(
                {"sku": "B-2", "name": "Bucket", "price": Decimal("3.00")},
                conflict_on=["sku"],
            )
        except ConflictError as exc:
            print("upsert onto a soft-deleted row:", exc.code, exc.detail)
        try:
            await products.bulk_upsert(
                [
                    {"sku": "C-3", "name": "Cup", "price": 1},
                    {"sku": "C-3", "name": "Cup", "price": 2},
                ],
                conflict_on=["sku"],
            )
        except RepositoryError as exc:
            print("the same key twice:", exc)
    # --8<-- [end:guarded]

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
