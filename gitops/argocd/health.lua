-- Argo CD health of a fledge.dev Canary: Healthy, Progressing, Degraded or Suspended, with the status message.
--
-- Reads the phase (spelled as Flagger spells it) and the conditions, which say what the phase alone does not:
-- the Ready reason tells a release held by a closed approval gate (WaitingForApproval), paused with
-- `fledge pause` (Paused), or suspended by spec.suspend (Suspended); Stalled tells a Canary Fledge cannot act
-- on until it is fixed (reason InvalidSpec or Conflict) whatever its phase; Reconciling in Initialized,
-- Succeeded or Failed tells a new revision Fledge saw but has not started releasing.  Argo CD runs it with gopher-lua
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
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Fledge to initialize the canary"
  return hs
end

local phase = status.phase
if phase == nil then
  phase = ""
end
local message = phase
if status.message ~= nil and status.message ~= "" then
  if phase == "" then
    message = status.message
  else
    message = phase .. ": " .. status.message
  end
end
if status.canaryWeight ~= nil and tonumber(status.canaryWeight) > 0 then
  message = message .. " (canary weight " .. tostring(status.canaryWeight) .. "%)"
end

-- A spec change Fledge has not acted on yet: whatever the status says is about the previous spec.  A Canary
-- Fledge has not written yet carries the CRD's default observedGeneration, -1.
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil
    and tonumber(status.observedGeneration) ~= tonumber(generation) then
  hs.status = "Progressing"
  if phase == "" and tonumber(status.observedGeneration) < 0 then
    hs.message = "Waiting for Fledge to initialize the canary"
  else
    hs.message = "Fledge has not yet acted on generation " .. tostring(generation) .. "; " .. message
  end
  return hs
end

local ready = condition(status, "Ready")
local reason = ""
if ready ~= nil and ready.reason ~= nil then
  reason = ready.reason
end
-- Stalled: rolled back, or nothing can be done until someone fixes the Canary (InvalidSpec, Conflict).
local stalled = condition(status, "Stalled")
stalled = stalled ~= nil and stalled.status == "True"
-- Reconciling in an idle phase: Fledge saw a new revision it has not started releasing (paused, say).
local reconciling = condition(status, "Reconciling")
reconciling = reconciling ~= nil and reconciling.status == "True"

if stalled or (phase == "Failed" and not reconciling) then
  hs.status = "Degraded"
elseif reason == "Suspended" or reason == "Paused" or reason == "WaitingForApproval"
    or phase == "Waiting" or phase == "WaitingPromotion" then
  hs.status = "Suspended"
elseif phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for Fledge to initialize the canary"
  return hs
elseif (phase == "Initialized" or phase == "Succeeded") and not reconciling then
  hs.status = "Healthy"
elseif phase == "Initialized" or phase == "Succeeded" or phase == "Failed" or phase == "Initializing"
    or phase == "Progressing" or phase == "Promoting" or phase == "Finalising" then
  hs.status = "Progressing"
else
  hs.status = "Unknown"
end
hs.message = message
return hs
