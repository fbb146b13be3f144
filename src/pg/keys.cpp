#include "pg/keys.hpp"

#include "pg/crossings.hpp"

#include <unordered_map>

extern "C" {
PG_FUNCTION_INFO_V1(attendance_keys_changed);
}

namespace attendance::pg {

namespace {

// The keys table and whether both its invalidation triggers are enabled.
constexpr const char* kKeysTable = R"sql(
SELECT r.oid, (SELECT count(*) FROM pg_catalog.pg_trigger t
               WHERE t.tgrelid = r.oid AND t.tgname = ANY($2) AND t.tgenabled = 'A') = 2
         AS triggers
FROM (SELECT pg_catalog.to_regclass($1)::oid AS oid) r
)sql";

// Every key; retired_at may be +/-infinity: never retired / always retired.
constexpr const char* kKeys = R"sql(
SELECT api_key, secret,
       CASE WHEN retired_at IS NULL THEN NULL
            WHEN isfinite(retired_at) THEN (extract(epoch FROM retired_at) * 1000000)::bigint
            WHEN retired_at > now() THEN 9223372036854775807
            ELSE -9223372036854775808 END AS retired_us
FROM @s.attendance_webhook_keys
)sql";

// Without a cache (no enabled triggers): the key's secret if it is active now.
constexpr const char* kActiveSecret = R"sql(
SELECT secret FROM @s.attendance_webhook_keys
WHERE api_key = $1 AND (retired_at IS NULL OR retired_at > now())
)sql";

// Row triggers (logical replication's apply fires only those) and one for TRUNCATE.
constexpr const char* kRowTrigger = "attendance_webhook_keys_changed";
constexpr const char* kTruncateTrigger = "attendance_webhook_keys_truncated";

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
    on_relation_invalidation(on_relcache_invalidation);
    // Valid from here unless an invalidation arrives while the keys are read; never valid
    // after an error half-way (the old copy must not survive it).
    cache.valid = true;
    try {
        // The newest committed state, not the calling statement's snapshot: in a
        // REPEATABLE READ transaction, or a statement that ingests many webhooks, that
        // snapshot may predate a change whose invalidation was just consumed.
        LatestSnapshot latest;
        auto meta = spi.query(kKeysTable,
                              {Arg::text(spi.schema() + ".attendance_webhook_keys"),
                               Arg::text_array({kRowTrigger, kTruncateTrigger})},
                              true);
        if (meta.empty() || meta[0]["oid"].is_null() || !meta[0]["triggers"].truth()) {
            cache.valid = false;
            return false;
        }
        cache.relid = Oid(meta[0]["oid"].int8());
        cache.schema = spi.schema();
        cache.keys.clear();
        // retired_at may be +/-infinity: never retired / always retired.
        for (const auto& r : spi.query(kKeys, {}, true)) {
            CachedKey& k = cache.keys[r["api_key"].str()];
            k.secret = r["secret"].str();
            if (!r["retired_us"].is_null()) k.retired_us = r["retired_us"].int8();
        }
    } catch (...) {
        // The snapshot pushed above is popped by the abort that this error leads to.
        cache.valid = false;
        throw;
    }
    return cache.valid;
}

}  // namespace

std::optional<std::string> active_secret(SpiSession& spi, const std::string& api_key) {
    // Changes committed by other backends since the last statement count now, as a
    // READ COMMITTED read of the table would see them (cheap when there are none).
    accept_invalidations();
    if ((cache.valid && cache.schema == spi.schema()) || reload(spi)) {
        auto it = cache.keys.find(api_key);
        if (it == cache.keys.end() || !is_active(it->second)) return std::nullopt;
        return it->second.secret;
    }
    auto rows = spi.query(kActiveSecret, {Arg::text(api_key)}, true, 1);
    if (rows.empty() || rows[0]["secret"].is_null()) return std::nullopt;
    return rows[0]["secret"].str();
}

}  // namespace attendance::pg

using namespace attendance;
using namespace attendance::pg;

// Trigger on attendance_webhook_keys (per row, and per statement for TRUNCATE): every
// backend drops its copy of the keys (at once in this transaction, at commit for the
// others; nothing if it rolls back).
extern "C" Datum attendance_keys_changed(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        invalidate_trigger_relation(fcinfo, "_attendance_keys_changed()");
        return PointerGetDatum(nullptr);
    });
}
