// Package chunker is labseed's image format.
//
// Publishing turns a root-filesystem tarball (tar, tar.gz, multi-member gzip as
// pigz writes it, or tar.zst) into a chunked image:
//
//   - the tar entries are cut into chunks at content-defined boundaries (a gear
//     rolling hash over the entries' names and data, as in FastCDC), so a new
//     version of an image that changes a few files shares almost all chunks with
//     the previous one;
//   - each chunk is a self-contained tar fragment compressed as its own zstd
//     frame; a file that spans chunks is split, and each piece carries its offset
//     in the file (PAX records LABSEED.offset and LABSEED.size), so every chunk can
//     be extracted alone, in any order; a sparse file (tar --sparse, GNU or
//     PAX) is carried as its data segments, each part at its offset, so its
//     holes cost nothing (image format 2, see SparseFormatVersion);
//   - the chunks, concatenated, are the payload; a BitTorrent v1 metainfo covers
//     the payload so the seeder can serve it as it is;
//   - a Manifest lists name, version, sizes and every chunk's SHA-256 (and,
//     from format 3, the BLAKE3 hash of its tar fragment) and is signed with
//     ed25519;
//   - every applied chunk leaves a skeleton (its fragment without the files'
//     data), kept with the record of the installed image, from which a sync
//     rebuilds the chunks the disk holds instead of decompressing them.
//
// Extraction is done by an Applier, which accepts chunk i whenever it is ready,
// verifies it against the manifest and writes it into the target directory
// through an os.Root, so nothing escapes the target. Work that needs every chunk
// (hard links, metadata of split files and of directories) is recorded per chunk
// in a state directory and done by Finish. A restarted Applier resumes: chunks
// already applied are not applied again, a half-applied one is applied again.
//
// Usage:
//
//	m, mi, err := chunker.Publish(ctx, input, payload, chunker.Config{Name: "lab1"})
//	...
//	a, err := chunker.NewApplier(m, chunker.ApplyConfig{Target: "/mnt/target"})
//	for i := range m.Chunks {
//		err = a.Apply(ctx, i, chunkBytes(i))
//	}
//	err = a.Finish(ctx)
package chunker
