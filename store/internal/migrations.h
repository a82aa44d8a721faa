/* Internal to store/: the ordered list of schema migrations applied by sl_store_migrate(). */
#ifndef SL_STORE_MIGRATIONS_H
#define SL_STORE_MIGRATIONS_H

#include <stddef.h>

typedef struct sl_store_migration {
    int version; /* strictly increasing, never reused */
    const char *name;
    const char *const *steps; /* statements, NULL-terminated; each runs on its own */
} sl_store_migration_t;

extern const sl_store_migration_t sl_store_migrations[];
extern const size_t sl_store_migrations_count;

#endif
