/* CRC-32 (ISO-HDLC, the zlib/Ethernet CRC): reflected poly 0xEDB88320, init and xorout 0xFFFFFFFF.
 * crc32(0, "123456789", 9) == 0xCBF43926. */
#ifndef K210W_CRC32_H
#define K210W_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue `crc` (0 to start) over data[0..len). */
uint32_t k210w_crc32(uint32_t crc, const uint8_t *data, size_t len);

#endif
