"""The chat cluster: sharded rooms and user sessions, WebSockets, one shared journal.

``shoal node --app examples.chat.app:start`` runs one node of it;
``python -m examples.chat`` (``make chat``) starts three. The protocol is in
``examples/chat/README.md``.
"""
