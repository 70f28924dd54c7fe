-- The `sni-routing` scenario's script (benches/load/sni.sh): routes a TLS connection by the
-- server name of its ClientHello, the decision the listener's `sni` rules make, in Lua.
local clusters = { ["localhost"] = "tenant-a", ["b.test"] = "tenant-b" }

-- The server name of a ClientHello in one TLS record: nil while it is incomplete, false when
-- the bytes are not a ClientHello or it names no server.
local function server_name(data)
  if #data < 5 then
    return nil
  end
  if data:byte(1) ~= 0x16 then
    return false
  end
  if #data < 5 + string.unpack(">I2", data, 4) then
    return nil
  end
  if data:byte(6) ~= 1 then
    return false
  end
  local at = 44                                   -- record and handshake headers, version, random
  at = at + 1 + data:byte(at)                     -- session id
  at = at + 2 + string.unpack(">I2", data, at)    -- cipher suites
  at = at + 1 + data:byte(at)                     -- compression methods
  local stop = at + 2 + string.unpack(">I2", data, at)
  at = at + 2
  while at + 4 <= stop do
    local kind, size = string.unpack(">I2I2", data, at)
    if kind == 0 then                             -- server_name: list size, type, name size, name
      local length = string.unpack(">I2", data, at + 7)
      return data:sub(at + 9, at + 8 + length):lower()
    end
    at = at + 4 + size
  end
  return false
end

function route(data, peer)
  local name = server_name(data)
  if name == nil then
    return nil
  end
  local cluster = name and clusters[name]
  if cluster then
    return { cluster = cluster }
  end
  return { close = true }
end
