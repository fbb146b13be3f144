// Settings (GUCs) of the extension; documented in docs/configuration.md.
#pragma once

#include "pg/pg.hpp"
#include "core/token.hpp"
#include "core/version.hpp"

namespace attendance::pg {

struct Settings {
    bool development_mode = false;
    bool replay_mode = false;
    int token_leeway_s = int(core::kDefaultTokenLeewayS);
    int max_body_bytes = 1024 * 1024;
    int max_json_depth = 64;
    char* identity_pattern = nullptr;
    char* room_pattern = nullptr;
    char* breakout_pattern = nullptr;      // read by SQL (_attendance_parent_room)
    int early_join_tolerance_s = 15 * 60;  // read by SQL (_attendance_claims)
    int webhook_log_level = LOG;
    // scheduler
    char* database_name = nullptr;
    bool scheduler_enabled = true;
    int calculation_delay_s = 300;
    int calculation_batch_size = 500;
    int fold_interval_ms = 500;
    int fold_wait_ms = 200;
    int fold_max_events = 5000;
    int reconcile_interval_s = 3600;
    int max_connection_age_s = 6 * 3600;
    bool verify_calculation = false;  // also derive from the log, and compare
    int run_history_retention_days = 30;
    // the log's partitions and retention (docs/configuration.md)
    int partition_interval_min = 30 * 24 * 60;
    int partitions_ahead = 2;
    int event_retention_min = 0;  // 0 keeps everything
    int retention_action = 0;     // 0 drop, 1 detach
};

inline constexpr const char* kLibraryVersion = attendance::kVersion;

extern Settings settings;

void define_settings();

}  // namespace attendance::pg
