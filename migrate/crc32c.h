/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum on every state-stream record.
 *
 * The SSE4.2 crc32 instruction when the CPU has it (several GB/s, so checksumming never
 * limits a save), else a table. Same polynomial and conventions as iSCSI/ext4: the CRC of
 * "123456789" is 0xe3069283.
 */
#ifndef HV_MIGRATE_CRC32C_H
#define HV_MIGRATE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c - extend @crc (0 to start) over @len bytes at @p. */
uint32_t crc32c(uint32_t crc, const void *p, size_t len);

#endif
