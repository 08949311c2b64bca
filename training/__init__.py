"""Training and judging: trainers, losses, samplers, analysis and reports, and (later) the Celery app."""
