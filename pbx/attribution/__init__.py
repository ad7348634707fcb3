"""Marketing attribution: visits and pool numbers (`visits`), and the GA4 /
webhook payloads built from call records (`integrations`). Pure."""
