"""The BackupRequest workflow: table.py (the order), steps.py (the steps), run.py (BackupRun),
job.py (the runner Job's manifest, a pure builder)."""
