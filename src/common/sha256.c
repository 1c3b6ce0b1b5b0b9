/* SHA-256 (sha256.h). */
#include "common/sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>

/* The implementation, fetched once: EVP_sha256() makes EVP_Digest look it up in the provider
 * on every call (OpenSSL 3), which cost as much as hashing an audit record. */
static EVP_MD *fetched;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int sha256_hex(const void *data, size_t len, char ret_hex[SHA256_HEX_LEN + 1])
{
    static const char hexd[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    pthread_once(&fetch_once, fetch_sha256);
    if (EVP_Digest(data, len, md, &mdlen, fetched ? fetched : EVP_sha256(), NULL) != 1 ||
        mdlen != 32)
        return -EIO;
    for (unsigned i = 0; i < 32; i++) {
        ret_hex[2 * i] = hexd[md[i] >> 4];
        ret_hex[2 * i + 1] = hexd[md[i] & 15];
    }
    ret_hex[SHA256_HEX_LEN] = '\0';
    return 0;
}
