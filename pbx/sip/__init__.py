"""SIP protocol layer: pure messages, transactions and dialogs; I/O only in transport and agent."""
