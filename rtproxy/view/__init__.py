"""Reading a recording as events: the event view (``events``), the annotated
timeline (``timeline``), response summaries (``summary``), filters and the
stripper (``strip``), and the conversation's audio (``audio``). Pure."""
