//go:build !linux

package luksconv

// renameNoReplace renames oldpath to newpath unless newpath exists (fs.ErrExist): a hard link and an
// unlink.
func renameNoReplace(oldpath, newpath string) error { return linkRename(oldpath, newpath) }
