from __future__ import annotations

from sample_app.models import Item, Memo
from sqla_repo import BaseRepository


class ItemRepository(BaseRepository[Item]):
    pass


class MemoRepository(BaseRepository[Memo]):
    pass
