/**
 * The daemon's one import of the shared tar format (reader and writer), so a move of the protocol's tar module
 * changes one line.
 *
 * @module
 */

export { archiveStream, readTar, TarWriter } from "@sandd/protocol/tar";
