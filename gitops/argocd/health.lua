-- Argo CD health of a fledge.dev Canary: Healthy, Progressing, Degraded or Suspended, with the status message.
--
-- Reads the phase (spelled as Flagger spells it) and the reason of the Ready condition, which says what the
-- phase alone does not: a release held by a closed approval gate (WaitingForApproval), paused with
-- `fledge pause` (Paused), or suspended by spec.suspend (Suspended).  Argo CD runs it with gopher-lua
-- (Lua 5.1), so nothing newer than Lua 5.1 is used.  Installed as the argocd-cm key
-- resource.customizations.health.fledge.dev_Canary (gitops/argocd/argocd-cm.yaml).

local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for Fledge to initialize the canary"
  return hs
end

local phase = status.phase
local message = phase
if status.message ~= nil and status.message ~= "" then
  message = phase .. ": " .. status.message
end
if status.canaryWeight ~= nil and tonumber(status.canaryWeight) > 0 then
  message = message .. " (canary weight " .. tostring(status.canaryWeight) .. "%)"
end

-- A spec change Fledge has not acted on yet: whatever the phase says is about the previous spec.
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil
    and tonumber(status.observedGeneration) < tonumber(generation) then
  hs.status = "Progressing"
  hs.message = "Fledge has not yet acted on generation " .. tostring(generation) .. "; " .. message
  return hs
end

local ready = condition(status, "Ready")
local reason = ""
if ready ~= nil and ready.reason ~= nil then
  reason = ready.reason
end

if phase == "Failed" then
  hs.status = "Degraded"
elseif reason == "Suspended" or reason == "Paused" or reason == "WaitingForApproval"
    or phase == "Waiting" or phase == "WaitingPromotion" then
  hs.status = "Suspended"
elseif phase == "Initialized" or phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Initializing" or phase == "Progressing" or phase == "Promoting" or phase == "Finalising" then
  hs.status = "Progressing"
else
  hs.status = "Unknown"
end
hs.message = message
return hs
