"""The ``accounts`` table: one row per registered user name, with its password hash."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from messenger_core import Database


@dataclass(frozen=True)
class Account:
    """A stored account (the hash never leaves this plugin)."""

    account_id: str
    password_hash: str


async def exists(db: Database, user_name: str) -> bool:
    """Whether ``user_name`` is taken."""
    return await db.fetchone("SELECT 1 FROM accounts WHERE user_name = %s", (user_name,)) is not None


async def create(db: Database, user_name: str, password_hash: str) -> str | None:
    """Insert an account; its 32-hex id, or None when the name was taken meanwhile."""
    row = await db.fetchone(
        "INSERT INTO accounts (id, user_name, password_hash) VALUES (%s, %s, %s)"
        " ON CONFLICT (user_name) DO NOTHING RETURNING id",
        (uuid.uuid4(), user_name, password_hash))
    return row["id"].hex if row else None


async def find(db: Database, user_name: str) -> Account | None:
    """The account named ``user_name``, or None."""
    row = await db.fetchone("SELECT id, password_hash FROM accounts WHERE user_name = %s", (user_name,))
    return Account(row["id"].hex, row["password_hash"]) if row else None


async def replace_hash(db: Database, account: Account, password_hash: str) -> bool:
    """Store a new hash for ``account`` unless its hash changed meanwhile; whether it was stored."""
    return await db.execute("UPDATE accounts SET password_hash = %s WHERE id = %s AND password_hash = %s",
                            (password_hash, uuid.UUID(account.account_id), account.password_hash)) == 1
