/* A program that crashes for real, for the crash probe's tests.
 *
 *   crashme main     SIGSEGV in crash_here(), called from main()
 *   crashme thread   SIGSEGV in crash_in_worker(), on the second of three threads
 *
 * Small thread stacks keep the cores small.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static pthread_barrier_t ready;

__attribute__((noinline)) void crash_here(volatile int *where)
{
        *where = 42;
}

__attribute__((noinline)) static void *crash_in_worker(void *arg)
{
        (void)arg;
        pthread_barrier_wait(&ready);
        crash_here((volatile int *)0);
        return NULL;
}

static void *idle_worker(void *arg)
{
        (void)arg;
        pthread_barrier_wait(&ready);
        for (;;)
                pause();
        return NULL;
}

int main(int argc, char **argv)
{
        if (argc > 1 && strcmp(argv[1], "thread") == 0) {
                pthread_attr_t attr;
                pthread_t idle, crashing;

                pthread_attr_init(&attr);
                pthread_attr_setstacksize(&attr, 64 * 1024);
                pthread_barrier_init(&ready, NULL, 3);
                pthread_create(&idle, &attr, idle_worker, NULL);
                pthread_create(&crashing, &attr, crash_in_worker, NULL);
                pthread_barrier_wait(&ready);
                for (;;)
                        pause();
        }
        crash_here((volatile int *)0);
        return 0;
}
