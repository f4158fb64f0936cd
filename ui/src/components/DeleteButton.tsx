// Delete asks once more in place: the second click deletes the profile and its keychain
// items.
import { ConfirmButton } from "./ConfirmButton";

export function DeleteButton({ name, onDelete }: { name: string; onDelete: () => Promise<void> }) {
  return (
    <ConfirmButton
      action="delete"
      label="Delete"
      confirm="Delete? Click again"
      ariaLabel={`Delete ${name}`}
      onConfirm={onDelete}
    />
  );
}
