#include "pg/keys.hpp"

extern "C" {
#include "commands/trigger.h"
#include "utils/inval.h"
}

#include <unordered_map>

extern "C" {
PG_FUNCTION_INFO_V1(attendance_keys_changed);
}

namespace attendance::pg {

namespace {

constexpr const char* kTrigger = "attendance_webhook_keys_changed";

struct CachedKey {
    std::string secret;
    std::optional<int64_t> retired_us;  // Unix microseconds
};

struct KeyCache {
    bool valid = false;
    Oid relid = InvalidOid;
    std::string schema;
    std::unordered_map<std::string, CachedKey> keys;
};

KeyCache cache;
bool callback_registered = false;

// Runs inside PostgreSQL's invalidation processing: only a flag is written here.
void on_relcache_invalidation(Datum, Oid relid) {
    if (relid == InvalidOid || relid == cache.relid) cache.valid = false;
}

int64_t unix_us(TimestampTz ts) { return int64_t(ts) + kPgEpochOffsetMs * 1000; }

bool is_active(const CachedKey& key) {
    if (!key.retired_us) return true;
    return *key.retired_us > unix_us(GetCurrentTransactionStartTimestamp());
}

// Reloads every key (there are a few). Returns false when the table has no enabled
// invalidation trigger: then nothing may be cached.
bool reload(SpiSession& spi) {
    if (!callback_registered) {
        pg_call([] { CacheRegisterRelcacheCallback(on_relcache_invalidation, 0); });
        callback_registered = true;
    }
    // Valid from here unless an invalidation arrives while the keys are read; never valid
    // after an error half-way (the old copy must not survive it).
    cache.valid = true;
    try {
        auto meta = spi.query(
            "SELECT r.oid, EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = r.oid "
            "  AND t.tgname = $2 AND t.tgenabled = 'A') "
            "FROM (SELECT pg_catalog.to_regclass($1)::oid AS oid) r",
            {Arg::text(spi.schema() + ".attendance_webhook_keys"), Arg::text(kTrigger)}, true);
        if (meta.empty() || !meta[0][0] || meta[0][1] != std::optional<std::string>("t")) {
            cache.valid = false;
            return false;
        }
        cache.relid = Oid(std::stoul(*meta[0][0]));
        cache.schema = spi.schema();
        cache.keys.clear();
        for (const auto& r :
             spi.query("SELECT api_key, secret, (extract(epoch FROM retired_at) * 1000000)::bigint "
                       "FROM @s.attendance_webhook_keys",
                       {}, true)) {
            CachedKey& k = cache.keys[r[0].value_or("")];
            k.secret = r[1].value_or("");
            if (r[2]) k.retired_us = std::stoll(*r[2]);
        }
    } catch (...) {
        cache.valid = false;
        throw;
    }
    return cache.valid;
}

}  // namespace

std::optional<std::string> active_secret(SpiSession& spi, const std::string& api_key) {
    // Changes committed by other backends since the last statement count now, as a
    // READ COMMITTED read of the table would see them (cheap when there are none).
    pg_call([] { AcceptInvalidationMessages(); });
    if ((cache.valid && cache.schema == spi.schema()) || reload(spi)) {
        auto it = cache.keys.find(api_key);
        if (it == cache.keys.end() || !is_active(it->second)) return std::nullopt;
        return it->second.secret;
    }
    auto rows = spi.query(
        "SELECT secret FROM @s.attendance_webhook_keys "
        "WHERE api_key = $1 AND (retired_at IS NULL OR retired_at > now())",
        {Arg::text(api_key)}, true, 1);
    if (rows.empty() || !rows[0][0]) return std::nullopt;
    return rows[0][0];
}

}  // namespace attendance::pg

using namespace attendance;
using namespace attendance::pg;

// Statement trigger on attendance_webhook_keys: every backend drops its copy of the keys
// (at once in this transaction, at commit for the others; nothing if it rolls back).
extern "C" Datum attendance_keys_changed(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        return pg_call([&] {
            if (!CALLED_AS_TRIGGER(fcinfo))
                ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                                errmsg("_attendance_keys_changed() must be called as a trigger")));
            CacheInvalidateRelcache(reinterpret_cast<TriggerData*>(fcinfo->context)->tg_relation);
            return PointerGetDatum(nullptr);
        });
    });
}
