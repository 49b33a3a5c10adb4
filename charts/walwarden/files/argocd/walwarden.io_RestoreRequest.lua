-- Argo CD health check for walwarden.io/v1alpha1 RestoreRequest.
--
-- Install it as resource.customizations.health.walwarden.io_RestoreRequest in the argocd-cm
-- ConfigMap (argocd/argocd-cm-patch.yaml, docs/gitops.md). This file is the source: the copies in
-- argocd/argocd-cm-patch.yaml and charts/walwarden/files/argocd/ must stay identical to it (a test
-- checks). A RestoreRequest is one-shot: once Succeeded it stays Healthy, once Failed or
-- RolledBack it stays Degraded until it is removed from git.
--
--   status.phase              health       message
--   Succeeded                 Healthy      status.message ("RestoreRequest succeeded", or the
--                                          dry run's "the plan is in status.plan")
--   Failed, RolledBack        Degraded     status.message (what failed, what was put back, and
--                                          what to do)
--   Pending, Running, unset   Progressing  the Waiting condition's message while the request
--                                          waits for the namespace lock, else the current step
--                                          and what it is doing, else status.message
--   anything else             Unknown
--
-- Lua 5.1, and only what Argo CD opens for a script from argocd-cm (base, table, a safe os):
-- no string.* functions.

local KIND = "RestoreRequest"

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

local function progress_message(status)
  local waiting = true_condition(status, "Waiting")
  if waiting ~= nil and present(waiting.message) then
    return waiting.message
  end
  local step = status.currentStep
  if present(step) then
    if type(status.steps) == "table" then
      for _, entry in ipairs(status.steps) do
        if entry.name == step and present(entry.message) then
          return step .. ": " .. entry.message
        end
      end
    end
    return "step " .. step
  end
  if present(status.message) then
    return status.message
  end
  return KIND .. " accepted; waiting for the Walwarden operator to run it"
end

local function failure_message(status)
  if present(status.message) then
    return status.message
  end
  local failed = true_condition(status, "Failed")
  if failed ~= nil and present(failed.message) then
    return failed.message
  end
  return KIND .. " " .. status.phase
end

local hs = {}
local status = obj.status
if type(status) ~= "table" then
  hs.status = "Progressing"
  hs.message = "waiting for the Walwarden operator to accept the " .. KIND
  return hs
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = KIND .. " succeeded"
  if present(status.message) then
    hs.message = status.message
  end
elseif phase == "Failed" or phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = failure_message(status)
elseif phase == nil or phase == "Pending" or phase == "Running" then
  hs.status = "Progressing"
  hs.message = progress_message(status)
else
  hs.status = "Unknown"
  hs.message = "unknown " .. KIND .. " phase " .. phase
end
return hs
