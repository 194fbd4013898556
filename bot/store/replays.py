"""The store's side of replay protection (bot/replays.py): each signed request once, with the
answer it got, until Slack's replay window for it has passed."""

from __future__ import annotations

from bot.store.mixin import StoreParts

Answer = tuple[int, str, bytes]  # HTTP status, content type, body


class SignedRequests(StoreParts):
    """Mixed into the Store, which provides the transactions."""

    def first_sight(self, signature: str, expires_at: str, *, wait: float) -> bool:
        """True the first time a request with this signature is seen, by any process."""
        return 1 == self._write_once(
            "INSERT OR IGNORE INTO replays (signature, expires_at) VALUES (?, ?)",
            [signature, expires_at],
            wait,
        )

    def remember_answer(self, signature: str, answer: Answer, *, wait: float) -> None:
        status, content_type, body = answer
        # One statement on its own: no BEGIN and COMMIT around it (round trips on PostgreSQL).
        self._write_once(
            "UPDATE replays SET status = ?, content_type = ?, body = ? WHERE signature = ?",
            [status, content_type, body, signature],
            wait,
        )

    def answer_for(self, signature: str) -> Answer | None:
        """What the first request with this signature was answered, once it was."""
        with self.connection() as db:
            row = db.execute(
                "SELECT status, content_type, body FROM replays"
                " WHERE signature = ? AND status IS NOT NULL",
                [signature],
            ).fetchone()
        return (int(row[0]), str(row[1]), bytes(row[2])) if row else None

    def forget_replays(self, now: str) -> int:
        """Drop requests whose replay window has passed: Slack's signature check refuses
        them by their timestamp now."""
        with self._transaction() as db:
            return db.execute("DELETE FROM replays WHERE expires_at < ?", [now]).rowcount
