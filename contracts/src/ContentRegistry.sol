// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ContentRegistry
/// @notice Registers StreamGate manifests (by their BLAKE3 id) with the access policy that
/// gates them. Entries are kept per creator: each account registers, changes and retires
/// only its own entry for an id, so nobody can front-run or overwrite another's. A manifest
/// names the account whose entry nodes honour (its registrant); nodes prefer that entry's
/// policy over the one inside the manifest.
contract ContentRegistry {
    /// @notice Which token standard gates the content (None: public).
    enum Standard {
        None,
        ERC721,
        ERC1155
    }

    /// @notice Who may watch. ERC721: balanceOf(viewer) >= minBalance, or, with
    /// specificToken, ownerOf(tokenId) == viewer. ERC1155: balanceOf(viewer, tokenId) >= minBalance.
    struct Policy {
        Standard standard;
        address token;
        uint256 tokenId;
        bool specificToken;
        uint256 minBalance;
    }

    struct Entry {
        bool registered;
        bool retired;
        Policy policy;
        string uri;
        uint64 updatedAt;
    }

    /// manifest id => creator => entry
    mapping(bytes32 => mapping(address => Entry)) private entries;

    event ContentRegistered(bytes32 indexed manifestId, address indexed creator, Policy policy, string uri);
    event PolicyChanged(bytes32 indexed manifestId, address indexed creator, Policy policy);
    event UriChanged(bytes32 indexed manifestId, address indexed creator, string uri);
    event ContentRetired(bytes32 indexed manifestId, address indexed creator);

    error AlreadyRegistered(bytes32 manifestId, address creator);
    error NotRegistered(bytes32 manifestId, address creator);
    error AlreadyRetired(bytes32 manifestId, address creator);
    error InvalidPolicy();

    /// @dev The caller's own live entry for `manifestId`: nobody can touch another's.
    modifier ownEntry(bytes32 manifestId) {
        Entry storage entry = entries[manifestId][msg.sender];
        if (!entry.registered) revert NotRegistered(manifestId, msg.sender);
        if (entry.retired) revert AlreadyRetired(manifestId, msg.sender);
        _;
    }

    /// @notice Registers `manifestId` under `msg.sender`.
    function register(bytes32 manifestId, Policy calldata policy, string calldata uri) external {
        Entry storage entry = entries[manifestId][msg.sender];
        if (entry.registered) revert AlreadyRegistered(manifestId, msg.sender);
        _checkPolicy(policy);
        entry.registered = true;
        entry.policy = policy;
        entry.uri = uri;
        entry.updatedAt = uint64(block.timestamp);
        emit ContentRegistered(manifestId, msg.sender, policy, uri);
    }

    function setPolicy(bytes32 manifestId, Policy calldata policy) external ownEntry(manifestId) {
        _checkPolicy(policy);
        Entry storage entry = entries[manifestId][msg.sender];
        entry.policy = policy;
        entry.updatedAt = uint64(block.timestamp);
        emit PolicyChanged(manifestId, msg.sender, policy);
    }

    function setUri(bytes32 manifestId, string calldata uri) external ownEntry(manifestId) {
        Entry storage entry = entries[manifestId][msg.sender];
        entry.uri = uri;
        entry.updatedAt = uint64(block.timestamp);
        emit UriChanged(manifestId, msg.sender, uri);
    }

    /// @notice Retires the caller's entry for good: it can no longer change, and nodes
    /// honouring it stop releasing keys for the video.
    function retire(bytes32 manifestId) external ownEntry(manifestId) {
        Entry storage entry = entries[manifestId][msg.sender];
        entry.retired = true;
        entry.updatedAt = uint64(block.timestamp);
        emit ContentRetired(manifestId, msg.sender);
    }

    /// @notice `creator`'s entry for `manifestId` (registered = false when there is none).
    function get(bytes32 manifestId, address creator) external view returns (Entry memory) {
        return entries[manifestId][creator];
    }

    function _checkPolicy(Policy calldata policy) private pure {
        if (policy.standard == Standard.None) {
            if (policy.token != address(0) || policy.minBalance != 0 || policy.specificToken) revert InvalidPolicy();
        } else {
            if (policy.token == address(0)) revert InvalidPolicy();
            if (policy.standard == Standard.ERC1155 && policy.specificToken) revert InvalidPolicy();
            if (!policy.specificToken && policy.minBalance == 0) revert InvalidPolicy();
        }
    }
}
