// SPDX-License-Identifier: GPL-2.0
/*
 * In-guest check of the virtio-gpu shrinker series.
 *
 * 1. Creates a few "purgeable" 2D objects, fills them, marks one DONTNEED and
 *    back WILLNEED (must be retained), and the others DONTNEED.
 * 2. Creates 2D objects totalling a multiple of RAM (default 1.5x MemTotal),
 *    maps each (VIRTGPU_MAP + mmap), fills it with a per-object pattern and
 *    sends it to the host (TRANSFER_TO_HOST + WAIT). Mappings stay in place.
 * 3. Verifies every byte of every object through its mapping, then sends
 *    each one to the host again (which must re-attach evicted backing).
 * 4. Checks that the DONTNEED objects were purged: WILLNEED reports
 *    retained == 0, touching the mapping raises SIGBUS and a transfer fails.
 *
 * With -p 0, phases 1 and 4 are skipped, so that the test also runs on a
 * kernel without MADVISE (the unpatched baseline).
 *
 * That is subtest "basic". -t selects others (comma-separated, in order), in
 * the style of IGT's msm_shrink:
 *   mmap-scan-fault  force shrinker scans through debugfs, then fault the
 *                    objects back through their mappings and use them again
 *   export-resident  an exported object is never evicted
 *   purge-sigbus     a purged object faults with SIGBUS, transfers fail
 *   forked-race     children transfer and verify their objects while the
 *                    parent applies anonymous memory pressure and forces scans
 * "small-objects" is "basic" with 16 KiB objects (-s 64).
 *
 * Prints "shrink-test: RESULT PASS" or "shrink-test: RESULT FAIL ..." as its
 * last line and exits 0 only on PASS. Build: gcc -static -O2 -o shrink-test
 * shrink-test.c. Needs nothing but the kernel uapi, defined below so that it
 * builds without kernel or libdrm headers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* include/uapi/drm/drm.h */
struct drm_gem_close {
	uint32_t handle;
	uint32_t pad;
};

#define DRM_IOCTL_BASE 'd'
#define DRM_COMMAND_BASE 0x40
#define DRM_IOCTL_GEM_CLOSE _IOW(DRM_IOCTL_BASE, 0x09, struct drm_gem_close)

struct drm_prime_handle {
	uint32_t handle;
	uint32_t flags;
	int32_t fd;
};

#define DRM_IOCTL_PRIME_HANDLE_TO_FD _IOWR(DRM_IOCTL_BASE, 0x2d, struct drm_prime_handle)

/* include/uapi/drm/virtgpu_drm.h */
struct drm_virtgpu_map {
	uint64_t offset;
	uint32_t handle;
	uint32_t pad;
};

struct drm_virtgpu_resource_create {
	uint32_t target, format, bind, width, height, depth, array_size;
	uint32_t last_level, nr_samples, flags, bo_handle, res_handle;
	uint32_t size, stride;
};

struct drm_virtgpu_3d_box {
	uint32_t x, y, z, w, h, d;
};

struct drm_virtgpu_3d_transfer_to_host {
	uint32_t bo_handle;
	struct drm_virtgpu_3d_box box;
	uint32_t level, offset, stride, layer_stride;
};

struct drm_virtgpu_3d_wait {
	uint32_t handle;
	uint32_t flags;
};

struct drm_virtgpu_madvise {
	uint32_t bo_handle;
	uint32_t retained;
	uint32_t madv;
	uint32_t pad;
};

#define VIRTGPU_IOWR(nr, type) _IOWR(DRM_IOCTL_BASE, DRM_COMMAND_BASE + (nr), type)
#define DRM_IOCTL_VIRTGPU_MAP VIRTGPU_IOWR(0x01, struct drm_virtgpu_map)
#define DRM_IOCTL_VIRTGPU_RESOURCE_CREATE \
	VIRTGPU_IOWR(0x04, struct drm_virtgpu_resource_create)
#define DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST \
	VIRTGPU_IOWR(0x07, struct drm_virtgpu_3d_transfer_to_host)
#define DRM_IOCTL_VIRTGPU_WAIT VIRTGPU_IOWR(0x08, struct drm_virtgpu_3d_wait)
#define DRM_IOCTL_VIRTGPU_MADVISE VIRTGPU_IOWR(0x0c, struct drm_virtgpu_madvise)
#define VIRTGPU_MADV_WILLNEED 0
#define VIRTGPU_MADV_DONTNEED 1

#define PIPE_TEXTURE_2D 2
#define VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM 2

struct bo {
	uint32_t handle;
	uint32_t width, height;
	size_t size;
	uint64_t *map;
};

static int drm_fd;
static int failures;

#define say(...) do { printf("shrink-test: " __VA_ARGS__); fflush(stdout); } while (0)
#define fail(...) do { say("FAIL: " __VA_ARGS__); failures++; } while (0)

static int xioctl(unsigned long req, void *arg)
{
	int ret;

	do {
		ret = ioctl(drm_fd, req, arg);
	} while (ret == -1 && (errno == EINTR || errno == EAGAIN));
	return ret;
}

static uint64_t pattern(uint32_t seed, size_t word)
{
	uint64_t x = ((uint64_t)seed << 32 | seed) ^ (word * 0x9e3779b97f4a7c15ULL);

	x ^= x >> 29;
	return x * 0xbf58476d1ce4e5b9ULL;
}

static int bo_create(struct bo *bo, uint32_t width, uint32_t height)
{
	struct drm_virtgpu_resource_create rc = {
		.target = PIPE_TEXTURE_2D,
		.format = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
		.width = width,
		.height = height,
		.depth = 1,
		.array_size = 1,
		.size = width * height * 4,
		.stride = width * 4,
	};
	struct drm_virtgpu_map map = { 0 };

	if (xioctl(DRM_IOCTL_VIRTGPU_RESOURCE_CREATE, &rc))
		return -errno;

	bo->handle = rc.bo_handle;
	bo->width = width;
	bo->height = height;
	bo->size = (size_t)width * height * 4;

	map.handle = bo->handle;
	if (xioctl(DRM_IOCTL_VIRTGPU_MAP, &map))
		return -errno;

	bo->map = mmap(NULL, bo->size, PROT_READ | PROT_WRITE, MAP_SHARED,
		       drm_fd, map.offset);
	if (bo->map == MAP_FAILED)
		return -errno;

	return 0;
}

static int bo_transfer(struct bo *bo)
{
	struct drm_virtgpu_3d_transfer_to_host t = {
		.bo_handle = bo->handle,
		.box = { .w = bo->width, .h = bo->height, .d = 1 },
	};

	if (xioctl(DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST, &t))
		return -errno;
	return 0;
}

static int bo_wait(struct bo *bo)
{
	struct drm_virtgpu_3d_wait w = { .handle = bo->handle };

	if (xioctl(DRM_IOCTL_VIRTGPU_WAIT, &w))
		return -errno;
	return 0;
}

static int bo_madvise(struct bo *bo, uint32_t madv, uint32_t *retained)
{
	struct drm_virtgpu_madvise m = { .bo_handle = bo->handle, .madv = madv };

	if (xioctl(DRM_IOCTL_VIRTGPU_MADVISE, &m))
		return -errno;
	*retained = m.retained;
	return 0;
}

static void bo_fill(struct bo *bo, uint32_t seed)
{
	size_t i, n = bo->size / 8;

	for (i = 0; i < n; i++)
		bo->map[i] = pattern(seed, i);
}

/* Returns the number of mismatching 8-byte words. */
static size_t bo_check(struct bo *bo, uint32_t seed)
{
	size_t i, bad = 0, n = bo->size / 8;

	for (i = 0; i < n; i++)
		bad += bo->map[i] != pattern(seed, i);
	return bad;
}

static sigjmp_buf sigbus_jmp;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(sigbus_jmp, 1);
}

/* 1 if reading the first word of the mapping raises SIGBUS. */
static int touch_sigbus(volatile uint64_t *p)
{
	struct sigaction sa = { .sa_handler = on_sigbus }, old;
	int hit = 0;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(sigbus_jmp, 1) == 0)
		(void)p[0];
	else
		hit = 1;
	sigaction(SIGBUS, &old, NULL);
	return hit;
}

static long meminfo_kb(const char *key)
{
	char line[256];
	long val = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == ':') {
			val = strtol(line + strlen(key) + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return val;
}

static void dump_file(const char *path)
{
	char line[256];
	FILE *f = fopen(path, "r");

	if (!f) {
		say("%s: %s\n", path, strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f))
		say("  %s", line);
	fclose(f);
}

static void dump_vmstat(void)
{
	char line[256];
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "pswpin ", 7) || !strncmp(line, "pswpout ", 8) ||
		    !strncmp(line, "oom_kill ", 9))
			say("  vmstat %s", line);
	fclose(f);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *card = "/dev/dri/card0";

static int subtest_basic(double ram_factor, uint32_t side, unsigned int npurge)
{
	unsigned int n, i, purged = 0;
	struct bo *bos, *pbos;
	long mem_kb;
	size_t bad_total = 0;
	double t0;
	int ret;

	mem_kb = meminfo_kb("MemTotal");
	n = (unsigned int)((double)mem_kb * 1024 * ram_factor / ((double)side * side * 4));
	say("MemTotal %ld KiB, SwapTotal %ld KiB: %u objects of %ux%u (%.1f MiB total), %u purgeable\n",
	    mem_kb, meminfo_kb("SwapTotal"), n, side, side,
	    (double)n * side * side * 4 / (1 << 20), npurge);

	bos = calloc(n, sizeof(*bos));
	pbos = calloc(npurge + 1, sizeof(*pbos));
	if (!bos || !pbos) {
		say("FAIL: out of memory\n");
		return 1;
	}

	/* Phase 1: purgeable objects, plus one marked DONTNEED and back. */
	for (i = 0; npurge && i <= npurge; i++) {
		uint32_t retained = 0;

		ret = bo_create(&pbos[i], side, side);
		if (ret) {
			say("FAIL: create purgeable %u: %s\n", i, strerror(-ret));
			return 1;
		}
		bo_fill(&pbos[i], 0x80000000u + i);
		ret = bo_transfer(&pbos[i]);
		if (!ret)
			ret = bo_wait(&pbos[i]);
		if (ret)
			fail("transfer purgeable %u: %s\n", i, strerror(-ret));
		ret = bo_madvise(&pbos[i], VIRTGPU_MADV_DONTNEED, &retained);
		if (ret) {
			say("FAIL: MADVISE: %s (kernel without the series?)\n",
			    strerror(-ret));
			return 1;
		}
		if (!retained)
			fail("purgeable %u purged right away\n", i);
	}
	if (npurge) {
		uint32_t retained = 0;

		/* pbos[npurge] is needed again before any pressure. */
		ret = bo_madvise(&pbos[npurge], VIRTGPU_MADV_WILLNEED, &retained);
		if (ret || !retained)
			fail("WILLNEED without pressure: ret %d retained %u\n", ret, retained);
	}
	if (npurge) {
		struct drm_virtgpu_madvise m = { .bo_handle = pbos[0].handle, .madv = 7 };

		if (ioctl(drm_fd, DRM_IOCTL_VIRTGPU_MADVISE, &m) != -1 || errno != EINVAL)
			fail("MADVISE madv=7 not rejected with EINVAL\n");
		m.madv = VIRTGPU_MADV_DONTNEED;
		m.pad = 1;
		if (ioctl(drm_fd, DRM_IOCTL_VIRTGPU_MADVISE, &m) != -1 || errno != EINVAL)
			fail("MADVISE pad=1 not rejected with EINVAL\n");
		m.pad = 0;
		m.bo_handle = 0xfffff;
		if (ioctl(drm_fd, DRM_IOCTL_VIRTGPU_MADVISE, &m) != -1 || errno != ENOENT)
			fail("MADVISE bad handle not rejected with ENOENT\n");
	}

	/* Phase 2: more objects than RAM, each filled and sent to the host. */
	t0 = now();
	for (i = 0; i < n; i++) {
		ret = bo_create(&bos[i], side, side);
		if (ret) {
			say("FAIL: create %u of %u: %s\n", i, n, strerror(-ret));
			return 1;
		}
		bo_fill(&bos[i], i);
		ret = bo_transfer(&bos[i]);
		if (ret)
			fail("transfer %u: %s\n", i, strerror(-ret));
		if (i % 64 == 63)
			say("created %u/%u (%.0f s)\n", i + 1, n, now() - t0);
	}
	for (i = 0; i < n; i++) {
		ret = bo_wait(&bos[i]);
		if (ret)
			fail("wait %u: %s\n", i, strerror(-ret));
	}
	say("phase 2 done in %.1f s\n", now() - t0);
	dump_file("/sys/kernel/debug/dri/0/virtio-gpu-shrinker");

	/* Phase 3: every byte back through the mappings, then to the host again. */
	t0 = now();
	for (i = 0; i < n; i++) {
		size_t bad = bo_check(&bos[i], i);

		if (bad) {
			fail("object %u: %zu of %zu words differ\n", i, bad, bos[i].size / 8);
			bad_total += bad;
		}
	}
	for (i = 0; i < n; i++) {
		ret = bo_transfer(&bos[i]);
		if (!ret)
			ret = bo_wait(&bos[i]);
		if (ret)
			fail("second transfer %u: %s\n", i, strerror(-ret));
	}
	say("phase 3 (verify %u objects, re-transfer) done in %.1f s, %zu bad words\n",
	    n, now() - t0, bad_total);
	if (npurge && bo_check(&pbos[npurge], 0x80000000u + npurge))
		fail("the WILLNEED object lost its content\n");

	/* Phase 4: the DONTNEED objects must have been purged. */
	for (i = 0; i < npurge; i++) {
		uint32_t retained = 1;

		ret = bo_madvise(&pbos[i], VIRTGPU_MADV_WILLNEED, &retained);
		if (ret)
			fail("WILLNEED %u: %s\n", i, strerror(-ret));
		else if (!retained)
			purged++;
	}
	say("purgeable objects purged: %u of %u\n", purged, npurge);
	if (purged != npurge)
		fail("only %u of %u DONTNEED objects were purged\n", purged, npurge);
	for (i = 0; i < npurge; i++) {
		uint32_t retained = 1;

		if (bo_madvise(&pbos[i], VIRTGPU_MADV_WILLNEED, &retained) || retained)
			continue;
		if (!touch_sigbus(pbos[i].map))
			fail("purged object %u readable without SIGBUS\n", i);
		ret = bo_transfer(&pbos[i]);
		if (ret != -EINVAL)
			fail("transfer of purged object %u: %d, expected -EINVAL\n", i, ret);
		break;
	}

	for (i = 0; i < n; i++) {
		struct drm_gem_close c = { .handle = bos[i].handle };

		munmap(bos[i].map, bos[i].size);
		xioctl(DRM_IOCTL_GEM_CLOSE, &c);
	}

	dump_file("/sys/kernel/debug/dri/0/virtio-gpu-shrinker");
	dump_vmstat();

	say("basic: %u objects, %.1f MiB, %zu bad words, %u/%u purged\n",
	    n, (double)n * side * side * 4 / (1 << 20), bad_total, purged, npurge);
	free(bos);
	free(pbos);
	return 0;
}

/* Sum of the counter NAME in the shrinker debugfs file, -1 if absent. */
static long long shrinker_counter(const char *name)
{
	char line[256], key[64];
	long long val, found = -1;
	FILE *f = fopen("/sys/kernel/debug/dri/0/virtio-gpu-shrinker", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %lld", key, &val) == 2 && !strcmp(key, name))
			found = val;
	fclose(f);
	return found;
}

/*
 * drm-resident-memory of this client in KiB, from fdinfo: 0 when only
 * drm-total-memory is there (nothing resident), -1 without memory stats.
 */
static long resident_kib(void)
{
	char path[64], line[256], unit[8];
	long val, resident = -1;
	int total = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", drm_fd);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unit[0] = 0;
		if (!strncmp(line, "drm-total-memory:", 17))
			total = 1;
		if (sscanf(line, "drm-resident-memory: %ld %7s", &val, unit) >= 1)
			resident = !strcmp(unit, "MiB") ? val * 1024 :
				   !strcmp(unit, "KiB") ? val : val / 1024;
	}
	fclose(f);
	return resident < 0 && total ? 0 : resident;
}

/*
 * Scan the virtio-gpu shrinker like reclaim would, through
 * /sys/kernel/debug/shrinker/drm-virtio-gpu:*\/scan. Eviction is
 * asynchronous: the first scan queues DETACH_BACKING, a later one releases
 * the pages, so scan, give the device a moment, scan again.
 */
static int force_scan(void)
{
	char path[512];
	struct dirent *de;
	int done = 0, round;
	DIR *d;

	for (round = 0; round < 2; round++) {
		d = opendir("/sys/kernel/debug/shrinker");
		if (!d)
			return -errno;
		while ((de = readdir(d))) {
			FILE *f;

			if (strncmp(de->d_name, "drm-virtio-gpu", 14))
				continue;
			snprintf(path, sizeof(path), "/sys/kernel/debug/shrinker/%s/scan",
				 de->d_name);
			f = fopen(path, "w");
			if (!f)
				continue;
			fprintf(f, "0 0 1000000\n");
			if (fclose(f) == 0)
				done++;
		}
		closedir(d);
		usleep(200 * 1000);
	}
	return done ? 0 : -ENOENT;
}

static int create_filled(struct bo *bo, uint32_t side, uint32_t seed)
{
	int ret = bo_create(bo, side, side);

	if (ret)
		return ret;
	bo_fill(bo, seed);
	ret = bo_transfer(bo);
	return ret ? ret : bo_wait(bo);
}

static void bo_destroy(struct bo *bo)
{
	struct drm_gem_close c = { .handle = bo->handle };

	munmap(bo->map, bo->size);
	xioctl(DRM_IOCTL_GEM_CLOSE, &c);
}

static int subtest_mmap_scan_fault(void)
{
	enum { N = 8 };
	struct bo bos[N];
	long long ev0, sw0, at0;
	long res0, res1, res2;
	unsigned int i;
	int ret;

	for (i = 0; i < N; i++) {
		ret = create_filled(&bos[i], 512, 100 + i);
		if (ret) {
			fail("mmap-scan-fault: create %u: %s\n", i, strerror(-ret));
			return 1;
		}
	}
	ev0 = shrinker_counter("evicted_objects");
	sw0 = shrinker_counter("swapped_in_objects");
	at0 = shrinker_counter("attach_backing_cmds");
	res0 = resident_kib();

	ret = force_scan();
	if (ret) {
		fail("mmap-scan-fault: no shrinker scan file: %s\n", strerror(-ret));
		return 1;
	}
	res1 = resident_kib();
	say("mmap-scan-fault: resident %ld -> %ld KiB, evicted %lld objects\n",
	    res0, res1, shrinker_counter("evicted_objects") - ev0);
	if (shrinker_counter("evicted_objects") - ev0 < N)
		fail("mmap-scan-fault: forced scans evicted fewer than %d objects\n", N);
	if (res0 < 0 || res1 > res0 - N * 1024)
		fail("mmap-scan-fault: fdinfo resident memory did not drop by %d KiB\n",
		     N * 1024);

	/* CPU faults bring the pages back, with their content. */
	for (i = 0; i < N; i++)
		if (bo_check(&bos[i], 100 + i))
			fail("mmap-scan-fault: object %u lost content\n", i);
	res2 = resident_kib();
	if (res2 < res0)
		fail("mmap-scan-fault: resident %ld KiB after faulting, was %ld\n",
		     res2, res0);
	if (shrinker_counter("swapped_in_objects") - sw0 < N)
		fail("mmap-scan-fault: fewer than %d swap-ins\n", N);

	/* The device gets the backing back before it touches it. */
	for (i = 0; i < N; i++) {
		ret = bo_transfer(&bos[i]);
		if (!ret)
			ret = bo_wait(&bos[i]);
		if (ret)
			fail("mmap-scan-fault: transfer %u: %s\n", i, strerror(-ret));
	}
	if (shrinker_counter("attach_backing_cmds") - at0 < N)
		fail("mmap-scan-fault: fewer than %d ATTACH_BACKING after swap-in\n", N);
	for (i = 0; i < N; i++)
		bo_destroy(&bos[i]);
	return 0;
}

static int subtest_export_resident(void)
{
	struct drm_prime_handle ph = { .flags = O_CLOEXEC | O_RDWR };
	struct bo bo;
	long long ev0;
	int ret;

	ret = create_filled(&bo, 512, 7);
	if (ret) {
		fail("export-resident: create: %s\n", strerror(-ret));
		return 1;
	}
	ph.handle = bo.handle;
	if (xioctl(DRM_IOCTL_PRIME_HANDLE_TO_FD, &ph)) {
		fail("export-resident: PRIME_HANDLE_TO_FD: %s\n", strerror(errno));
		return 1;
	}
	ev0 = shrinker_counter("evicted_objects");
	force_scan();
	if (shrinker_counter("evicted_objects") != ev0)
		fail("export-resident: an exported object was evicted\n");
	if (bo_check(&bo, 7))
		fail("export-resident: content changed\n");
	close(ph.fd);
	bo_destroy(&bo);
	return 0;
}

static int subtest_purge_sigbus(void)
{
	enum { N = 4 };
	struct bo bos[N];
	long long pu0, un0;
	uint32_t retained;
	unsigned int i;
	int ret;

	for (i = 0; i < N; i++) {
		ret = create_filled(&bos[i], 512, 200 + i);
		if (!ret)
			ret = bo_madvise(&bos[i], VIRTGPU_MADV_DONTNEED, &retained);
		if (ret) {
			fail("purge-sigbus: object %u: %s\n", i, strerror(-ret));
			return 1;
		}
	}
	pu0 = shrinker_counter("purged_objects");
	un0 = shrinker_counter("unref_cmds");
	force_scan();
	if (shrinker_counter("purged_objects") - pu0 < N)
		fail("purge-sigbus: fewer than %d objects purged\n", N);
	if (shrinker_counter("unref_cmds") - un0 < N)
		fail("purge-sigbus: the host was not told (RESOURCE_UNREF)\n");
	for (i = 0; i < N; i++) {
		retained = 1;
		if (bo_madvise(&bos[i], VIRTGPU_MADV_WILLNEED, &retained) || retained)
			fail("purge-sigbus: object %u still retained\n", i);
		if (!touch_sigbus(bos[i].map))
			fail("purge-sigbus: object %u readable without SIGBUS\n", i);
		ret = bo_transfer(&bos[i]);
		if (ret != -EINVAL)
			fail("purge-sigbus: transfer of purged object %u: %d\n", i, ret);
		bo_destroy(&bos[i]);
	}
	return 0;
}

/* One child: its own client, objects, and transfer/verify rounds. */
static int race_child(unsigned int id, double seconds)
{
	enum { N = 16 };
	struct bo bos[N];
	unsigned int i, round = 0;
	double end = now() + seconds;
	int ret;

	drm_fd = open(card, O_RDWR | O_CLOEXEC);
	if (drm_fd < 0)
		return 1;
	for (i = 0; i < N; i++) {
		ret = create_filled(&bos[i], 256, id << 16 | i);
		if (ret) {
			say("FAIL: forked-race child %u create %u: %s\n", id, i, strerror(-ret));
			return 1;
		}
	}
	while (now() < end) {
		for (i = 0; i < N; i++) {
			uint32_t seed = id << 16 | round << 8 | i;

			if (bo_check(&bos[i], round ? id << 16 | (round - 1) << 8 | i :
						id << 16 | i)) {
				say("FAIL: forked-race child %u object %u lost content\n", id, i);
				return 1;
			}
			bo_fill(&bos[i], seed);
			ret = bo_transfer(&bos[i]);
			if (ret) {
				say("FAIL: forked-race child %u transfer: %s\n", id, strerror(-ret));
				return 1;
			}
		}
		round++;
	}
	say("forked-race: child %u did %u rounds\n", id, round);
	return 0;
}

static int subtest_forked_race(double seconds)
{
	enum { CHILDREN = 4 };
	long mem_kb = meminfo_kb("MemTotal");
	size_t chunk = (size_t)mem_kb * 1024 / 8;
	pid_t pids[CHILDREN];
	unsigned int i, rounds = 0;
	int status, bad = 0;
	double end = now() + seconds;

	for (i = 0; i < CHILDREN; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(race_child(i + 1, seconds));
		if (pids[i] < 0) {
			fail("forked-race: fork: %s\n", strerror(errno));
			return 1;
		}
	}
	/* Anonymous pressure of about the size of RAM, and forced scans. */
	while (now() < end) {
		char *p[8];
		unsigned int k;

		for (k = 0; k < 8; k++) {
			p[k] = malloc(chunk);
			if (p[k])
				memset(p[k], k + rounds, chunk);
		}
		for (k = 0; k < 8; k++)
			free(p[k]);
		force_scan();
		rounds++;
	}
	for (i = 0; i < CHILDREN; i++) {
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			bad++;
	}
	say("forked-race: %u pressure rounds, %d of %d children failed\n", rounds, bad,
	    CHILDREN);
	if (bad)
		fail("forked-race: %d children failed\n", bad);
	return 0;
}

int main(int argc, char **argv)
{
	double ram_factor = 1.5, seconds = 20;
	uint32_t side = 512;	/* 512x512x4 = 1 MiB per object */
	unsigned int npurge = 16;
	char *tests = "basic", *name, *save = NULL;
	int ret = 0, opt;

	while ((opt = getopt(argc, argv, "c:f:s:p:t:T:")) != -1) {
		switch (opt) {
		case 'c': card = optarg; break;
		case 'f': ram_factor = atof(optarg); break;
		case 's': side = strtoul(optarg, NULL, 0); break;
		case 'p': npurge = strtoul(optarg, NULL, 0); break;
		case 't': tests = optarg; break;
		case 'T': seconds = atof(optarg); break;
		default:
			fprintf(stderr,
				"usage: %s [-c card] [-f ram-factor] [-s side] [-p purgeable] [-t subtests] [-T race-seconds]\n",
				argv[0]);
			return 2;
		}
	}

	drm_fd = open(card, O_RDWR | O_CLOEXEC);
	if (drm_fd < 0) {
		say("RESULT FAIL open %s: %s\n", card, strerror(errno));
		return 1;
	}

	for (name = strtok_r(tests, ":", &save); name; name = strtok_r(NULL, ":", &save)) {
		int before = failures, r;

		say("SUBTEST %s: start\n", name);
		if (!strcmp(name, "basic"))
			r = subtest_basic(ram_factor, side, npurge);
		else if (!strcmp(name, "small-objects"))
			r = subtest_basic(ram_factor, 64, npurge);
		else if (!strcmp(name, "mmap-scan-fault"))
			r = subtest_mmap_scan_fault();
		else if (!strcmp(name, "export-resident"))
			r = subtest_export_resident();
		else if (!strcmp(name, "purge-sigbus"))
			r = subtest_purge_sigbus();
		else if (!strcmp(name, "forked-race"))
			r = subtest_forked_race(seconds);
		else {
			say("unknown subtest %s\n", name);
			return 2;
		}
		if (r && failures == before)
			failures++;
		say("SUBTEST %s: %s\n", name, failures == before ? "PASS" : "FAIL");
		ret |= failures != before;
	}

	if (failures) {
		say("RESULT FAIL %d check(s) failed\n", failures);
		return 1;
	}
	say("RESULT PASS\n");
	return 0;
}
