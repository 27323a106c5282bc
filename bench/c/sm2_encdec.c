/* Reference for SM2 encrypt/decrypt of a 16-byte key in C, through the same
 * libcrypto EVP calls the gateway makes (openssl speed has no SM2 encryption).
 * Prints: "<encrypt/s> <decrypt/s>". Build: cc sm2_encdec.c -lcrypto */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);  /* CPU time, like openssl speed */
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "SM2");
    unsigned char cek[16] = {0}, ct[256], pt[64];
    size_t ctlen = 0, ptlen;
    long n = 0;
    double t0 = now(), t;
    do {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
        ctlen = sizeof ct;
        if (EVP_PKEY_encrypt_init(c) != 1 || EVP_PKEY_encrypt(c, ct, &ctlen, cek, 16) != 1) return 1;
        EVP_PKEY_CTX_free(c);
        n++;
    } while ((t = now() - t0) < secs);
    double enc = n / t;
    n = 0;
    t0 = now();
    do {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
        ptlen = sizeof pt;
        if (EVP_PKEY_decrypt_init(c) != 1 || EVP_PKEY_decrypt(c, pt, &ptlen, ct, ctlen) != 1) return 1;
        EVP_PKEY_CTX_free(c);
        n++;
    } while ((t = now() - t0) < secs);
    printf("%.1f %.1f\n", enc, n / t);
    EVP_PKEY_free(key);
    return 0;
}
