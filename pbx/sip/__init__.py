"""SIP protocol layer: pure message/transaction/dialog logic, asyncio only in transport.py and agent.py."""
