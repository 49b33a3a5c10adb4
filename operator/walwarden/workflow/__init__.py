"""The workflow engine both kinds run on (DESIGN §5: below restore/ and backup/, above the adapters).

    engine.py   Run (one pass over a request: typed spec and status, clients, settings, Events),
                Step and StepTable (the columns: dry run, clean-up, undo, touches the vault),
                advance() (the next unfinished steps; a wait becomes a kopf retry) and finish()
    steps.py    steps and helpers both kinds share: the namespace lock, required Secrets, the
                operator's own S3 client, the request's topology, a runner Job run to its outcome
    tiers.py    stopping and starting the vault's services tier by tier
    audit.py    a pass's transitions appended to the hash-chained audit log
    context.py  what every handler needs, created once at start-up

Nothing here knows a restore from a backup: the kinds bring their tables.
"""
