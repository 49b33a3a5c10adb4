"""BackupSchedule: when runs are due (timing), which backups are kept (retention), and the
operator's pass over one schedule (reconcile)."""
