-- Argo CD health check for walwarden.io/v1alpha1 BackupSchedule.
--
-- Install it as resource.customizations.health.walwarden.io_BackupSchedule in the argocd-cm
-- ConfigMap (argocd/argocd-cm-patch.yaml, docs/gitops.md). This file is the source: the copies in
-- argocd/argocd-cm-patch.yaml and charts/walwarden/files/argocd/ must stay identical to it (a test
-- checks).
--
--   state                                        health       message
--   condition Failed=True (bad cron/time zone)   Degraded     its message (what to write)
--   spec.suspend                                 Suspended    no new runs
--   status.lastBackupPhase Failed                Degraded     which backup failed, and the last success
--   condition DrillFailed=True                   Degraded     which drill failed and why: not proven (or
--                                                             the unusable spec.drill.schedule)
--   no status yet                                Progressing  waiting for the operator
--   otherwise                                    Healthy      status.message (the next run)
--
-- Lua 5.1, and only what Argo CD opens for a script from argocd-cm: no string.* functions.

local function present(value)
  return value ~= nil and value ~= ""
end

local function true_condition(status, wanted)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == wanted and condition.status == "True" then
      return condition
    end
  end
  return nil
end

local health = {}
local status = obj.status
if type(status) ~= "table" then
  status = {}
end
local failed = true_condition(status, "Failed")
if failed ~= nil then
  health.status = "Degraded"
  health.message = failed.message
elseif obj.spec ~= nil and obj.spec.suspend == true then
  health.status = "Suspended"
  health.message = "BackupSchedule suspended: no new runs"
elseif status.lastBackupPhase == "Failed" then
  health.status = "Degraded"
  local since = "no successful backup yet"
  if present(status.lastSuccessfulBackup) then
    since = "the last successful one is " .. status.lastSuccessfulBackup
    if present(status.lastSuccessfulTime) then
      since = since .. " (" .. status.lastSuccessfulTime .. ")"
    end
  end
  health.message = "the last scheduled backup " .. status.lastBackup .. " failed (see its message); " .. since
elseif true_condition(status, "DrillFailed") ~= nil then
  local drill = true_condition(status, "DrillFailed")
  health.status = "Degraded"
  if drill.reason == "DrillScheduleInvalid" then
    health.message = drill.message .. " (no restore drills until it is fixed)"
  else
    health.message = "the last restore drill " .. drill.message .. ": the newest backup is not proven to restore"
  end
elseif next(status) == nil then
  health.status = "Progressing"
  health.message = "waiting for the Walwarden operator to schedule the BackupSchedule"
else
  health.status = "Healthy"
  if present(status.message) then
    health.message = status.message
  else
    health.message = "BackupSchedule scheduled"
  end
end
return health
