"""One page per question; thin: reads via dashboard.data, writes via surveillance.service."""
