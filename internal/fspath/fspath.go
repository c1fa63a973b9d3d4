// Package fspath is the path handling the filesystem readers (xfs, ext) share when they resolve a
// guest path: its components, and symbolic-link targets made relative to the filesystem's mount point.
package fspath

import "strings"

// Split returns the components of p without empty and "." ones ("/a//./b" gives a, b); ".." is kept
// for the caller to resolve physically.
func Split(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// Clean is p as "/" followed by its components: the form used in messages.
func Clean(p string) string { return "/" + strings.Join(Split(p), "/") }

// Strip turns an absolute symlink target into a path inside the filesystem mounted at mountPoint, or
// reports that it lies elsewhere. The target is cleaned lexically only as far as "." and empty
// components; ".." in a target that climbs out of the mount point is resolved physically later and
// stops at the filesystem's root.
func Strip(mountPoint, target string) (string, bool) {
	mp := Split(mountPoint)
	t := Split(target)
	if len(t) < len(mp) {
		return "", false
	}
	for i := range mp {
		if t[i] != mp[i] {
			return "", false
		}
	}
	return strings.Join(t[len(mp):], "/"), true
}
