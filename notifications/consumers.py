"""`/ws/notifications/`: a user's notifications as they come, and their unread count.

The connection is the user's by a single-use ticket from `POST /api/notifications/ws-ticket/`
in the query (`?ticket=`; never the API token, which would reach logs), or else by the session
cookie (a page of this site), and only if its Origin is one this site serves (asgi.py). It joins
the user's group only.

Server to client (JSON):
- `{"type": "ready", "unread_count": n}` once connected;
- `{"type": "notification.created", "notification": {...}, "unread_count": n}`;
- `{"type": "notification.read", "ids": [...] | null (all), "unread_count": n}`;
- `{"type": "unread_count", "unread_count": n}` for a notification of a type the user does not
  want pushed live (the `realtime` channel of their preferences off): in the feed, not shown;
- `{"type": "resumed", "more": bool, "unread_count": n}` after what a `resume` missed, each as
  a `notification.created`;
- `{"type": "pong"}`, and `{"type": "error", "detail": "..."}` for a frame it cannot take.
Client to server: `{"type": "resume", "last_id": n}` (what came after the last notification it
saw, oldest first, at most RESUME_LIMIT, but for the types not pushed live), `{"type": "ping"}`.

Each unread count is read from the database when the frame is sent: the last one a client gets
is the count after the last change it was told of. WebSocket pings keep idle connections alive
and find dead ones (the ASGI server's: daphne pings every 20 s)."""

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from notifications import preferences, realtime, services
from notifications.api.serializers import NotificationSerializer
from notifications.models import Notification

RESUME_LIMIT = 100
MAX_FRAME = 4096  # bytes: every frame a client sends is a few dozen


class NotificationConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.user = await self._user()
        if self.user is None:
            await self.close(code=4401)  # not signed in: the client asks for a new ticket
            return
        self.group = realtime.group_of(self.user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._send("ready", unread_count=await self._unread())

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None or len(text_data) > MAX_FRAME:
            return await self._error(f"Send a JSON object as text, at most {MAX_FRAME} bytes.")
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):
            return await self._error("The frame is not JSON.")
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            return await self._send("pong")
        if kind == "resume":
            last_id = frame.get("last_id", 0)
            if type(last_id) is not int or last_id < 0:
                return await self._error("last_id must be a whole number, 0 or more.")
            return await self._resume(last_id)
        return await self._error('Unknown frame: its "type" is "resume" or "ping".')

    # Group messages (notifications/realtime.py)

    async def notification_created(self, event):
        notification = await self._notification(event["id"])
        if notification is not None:  # deleted since, or not in the feed
            await self._send("notification.created", **notification)

    async def notification_counted(self, event):
        await self._send("unread_count", unread_count=await self._unread())

    async def notification_read(self, event):
        await self._send("notification.read", ids=event["ids"], unread_count=await self._unread())

    # Helpers

    async def _user(self):
        """A ticket decides over the session cookie: the browser sends the cookie of an admin
        session with every connection, also from a page signed in by token as someone else."""
        tickets = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("ticket")
        if tickets:
            if len(tickets[0]) > 128:
                return None
            return await database_sync_to_async(realtime.redeem_ticket)(tickets[0])
        user = self.scope.get("user")
        return user if user is not None and user.is_authenticated else None

    async def _send(self, kind: str, **fields):
        await self.send(text_data=json.dumps({"type": kind, **fields}))

    async def _error(self, detail: str):
        await self._send("error", detail=detail)

    @database_sync_to_async
    def _unread(self) -> int:
        return services.unread_count(self.user)

    @database_sync_to_async
    def _notification(self, pk: int) -> dict | None:
        row = Notification.objects.filter(pk=pk, user=self.user, in_app=True).first()
        if row is None:
            return None
        context = {"reader": self.user}
        return {
            "notification": NotificationSerializer(row, context=context).data,
            "unread_count": services.unread_count(self.user),
        }

    async def _resume(self, last_id: int):
        rows, unread = await self._missed(last_id)
        for row in rows[:RESUME_LIMIT]:
            await self._send("notification.created", notification=row, unread_count=unread)
        await self._send("resumed", more=len(rows) > RESUME_LIMIT, unread_count=unread)

    @database_sync_to_async
    def _missed(self, last_id: int) -> tuple[list[dict], int]:
        """What a push would have shown: not the types whose live push the user switched off
        (they are in the feed, and counted)."""
        rows = Notification.objects.filter(user=self.user, in_app=True, pk__gt=last_id)
        rows = rows.exclude(type__in=preferences.not_live(self.user))
        rows = rows.order_by("id")[: RESUME_LIMIT + 1]
        context = {"reader": self.user}
        data = [NotificationSerializer(row, context=context).data for row in rows]
        return data, services.unread_count(self.user)
